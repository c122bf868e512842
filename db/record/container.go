package record

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
)

// Annotations of a container's record, in its config.json. The keys are
// those of version 0 and must stay: containers on nodes carry them.
const (
	AnnotationVersion     = "io.crisp.record-version" // Version; absent in version 0
	AnnotationSandboxID   = "io.crisp.sandbox-id"     // crisp's pod id (runsc's grouping id may differ)
	AnnotationName        = "io.crisp.container-name" // crisp's full container name
	AnnotationKubeName    = "io.crisp.kube-name"      // metadata.name
	AnnotationAttempt     = "io.crisp.attempt"        // metadata.attempt, decimal
	AnnotationLabels      = "io.crisp.labels"         // CRI labels, a JSON object
	AnnotationAnnotations = "io.crisp.annotations"    // CRI annotations, a JSON object
	AnnotationImage       = "io.crisp.image"          // the image as requested
	AnnotationImageRef    = "io.crisp.image-ref"      // the resolved image id; absent if none
	AnnotationLogPath     = "io.crisp.log-path"       // absent if none
	AnnotationHandler     = "io.crisp.handler"        // the pod's runtime handler
	AnnotationConfig      = "io.crisp.config"         // the CRI ContainerConfig, deterministic protobuf, base64
)

// Container is a container's record: enough, with the runtime's state and
// the storage record's creation time, to rebuild its row.
type Container struct {
	Version     int    // the format ReadContainer read; WriteContainer writes Version
	SandboxID   string // crisp's pod id
	Name        string // crisp's full container name
	KubeName    string
	Attempt     uint32
	Image       string // as requested
	ImageRef    string // resolved image id
	LogPath     string
	Handler     string
	Labels      map[string]string
	Annotations map[string]string // the CRI ones, all of them: the spec gets only those passed through
	Config      []byte            // CRI ContainerConfig, deterministic protobuf (what the row stores)
}

// WriteContainer adds c, in the current format, to a container's spec
// annotations a. It refuses a record ReadContainer would refuse, and then
// leaves a as it was.
func WriteContainer(a map[string]string, c Container) error {
	if err := c.check(); err != nil {
		return fmt.Errorf("container record of %q: %w", c.Name, err)
	}
	labels, err := json.Marshal(c.Labels)
	if err != nil {
		return fmt.Errorf("container record of %q: encode labels: %w", c.Name, err)
	}
	annotations, err := json.Marshal(c.Annotations)
	if err != nil {
		return fmt.Errorf("container record of %q: encode annotations: %w", c.Name, err)
	}
	a[AnnotationVersion] = versionString
	a[AnnotationSandboxID] = c.SandboxID
	a[AnnotationName] = c.Name
	a[AnnotationKubeName] = c.KubeName
	a[AnnotationAttempt] = strconv.FormatUint(uint64(c.Attempt), 10)
	a[AnnotationLabels] = string(labels)
	a[AnnotationAnnotations] = string(annotations)
	a[AnnotationImage] = c.Image
	a[AnnotationHandler] = c.Handler
	a[AnnotationConfig] = base64.StdEncoding.EncodeToString(c.Config)
	if c.ImageRef != "" {
		a[AnnotationImageRef] = c.ImageRef
	}
	if c.LogPath != "" {
		a[AnnotationLogPath] = c.LogPath
	}
	return nil
}

// ReadContainer reads a container's record back from its spec's
// annotations, of any version up to Version. A key missing or malformed is
// an error naming it: such a spec was not written by crisp.
func ReadContainer(a map[string]string) (Container, error) {
	c := Container{
		SandboxID: a[AnnotationSandboxID], Name: a[AnnotationName], KubeName: a[AnnotationKubeName],
		Image: a[AnnotationImage], ImageRef: a[AnnotationImageRef], LogPath: a[AnnotationLogPath], Handler: a[AnnotationHandler],
	}
	if v, ok := a[AnnotationVersion]; ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return Container{}, fmt.Errorf("annotation %s: %q is not a version", AnnotationVersion, v)
		}
		if err := checkVersion(n); err != nil {
			return Container{}, fmt.Errorf("annotation %s: %w", AnnotationVersion, err)
		}
		c.Version = n
	}
	// Versions 0 and 1 differ only in AnnotationVersion.
	for _, k := range []string{AnnotationAttempt, AnnotationLabels, AnnotationAnnotations, AnnotationConfig} {
		if a[k] == "" {
			return Container{}, fmt.Errorf("annotation %s is missing", k)
		}
	}
	attempt, err := strconv.ParseUint(a[AnnotationAttempt], 10, 32)
	if err != nil {
		return Container{}, fmt.Errorf("annotation %s: %w", AnnotationAttempt, err)
	}
	c.Attempt = uint32(attempt)
	if err := json.Unmarshal([]byte(a[AnnotationLabels]), &c.Labels); err != nil {
		return Container{}, fmt.Errorf("annotation %s: %w", AnnotationLabels, err)
	}
	if err := json.Unmarshal([]byte(a[AnnotationAnnotations]), &c.Annotations); err != nil {
		return Container{}, fmt.Errorf("annotation %s: %w", AnnotationAnnotations, err)
	}
	if c.Config, err = base64.StdEncoding.DecodeString(a[AnnotationConfig]); err != nil {
		return Container{}, fmt.Errorf("annotation %s: %w", AnnotationConfig, err)
	}
	if err := c.check(); err != nil {
		return Container{}, err
	}
	return c, nil
}

// Row returns the row of container id as recorded, its config hash
// computed as the CRI server computes it. Its state, pid and times are
// zero, for the caller to set.
func (c Container) Row(id string) db.Container {
	return db.Container{
		ID: id, SandboxID: c.SandboxID, Name: c.Name, KubeName: c.KubeName, Attempt: c.Attempt,
		Image: c.Image, ImageRef: c.ImageRef, LogPath: c.LogPath, Labels: c.Labels, Annotations: c.Annotations,
		Config: c.Config, ConfigHash: db.ConfigHash(c.Config, c.SandboxID),
	}
}

// check refuses a record that could not be rebuilt into a row, naming the
// annotation that would be missing or malformed.
func (c Container) check() error {
	for _, f := range []struct{ key, v string }{{AnnotationSandboxID, c.SandboxID}, {AnnotationName, c.Name},
		{AnnotationKubeName, c.KubeName}, {AnnotationHandler, c.Handler}} {
		if f.v == "" {
			return fmt.Errorf("annotation %s is missing", f.key)
		}
	}
	if len(c.Config) == 0 {
		return fmt.Errorf("annotation %s is missing", AnnotationConfig)
	}
	if err := proto.Unmarshal(c.Config, &runtimeapi.ContainerConfig{}); err != nil {
		return fmt.Errorf("annotation %s: %w", AnnotationConfig, err)
	}
	return nil
}
