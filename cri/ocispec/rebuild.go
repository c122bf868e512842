package ocispec

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Row is what a container's config.json says of its database row: enough,
// with the runtime's state and the storage record's creation time, to
// rebuild the row after the database is lost.
type Row struct {
	SandboxID   string // crisp's pod id
	Name        string // crisp's full container name
	KubeName    string
	Attempt     uint32
	Image       string // as requested
	ImageRef    string // resolved image id
	LogPath     string
	Handler     string
	Labels      map[string]string
	Annotations map[string]string
	Config      []byte // CRI ContainerConfig, deterministic protobuf (what the row stores)
}

// rowAnnotations adds the keys ReadRow reads back.
func rowAnnotations(out map[string]string, in *ContainerInput) error {
	blob, err := proto.MarshalOptions{Deterministic: true}.Marshal(in.Config)
	if err != nil {
		return fmt.Errorf("encode container config: %w", err)
	}
	labels, err := json.Marshal(in.Config.GetLabels())
	if err != nil {
		return err
	}
	annotations, err := json.Marshal(in.Config.GetAnnotations())
	if err != nil {
		return err
	}
	out[AnnotationCrispSandboxID] = in.Sandbox.ID
	out[AnnotationCrispName] = in.Name
	out[AnnotationKubeName] = in.Config.GetMetadata().GetName()
	out[AnnotationAttempt] = strconv.FormatUint(uint64(in.Config.GetMetadata().GetAttempt()), 10)
	out[AnnotationLabels] = string(labels)
	out[AnnotationCRIAnnotations] = string(annotations)
	out[AnnotationImage] = in.Config.GetImage().GetImage()
	out[AnnotationHandler] = in.Sandbox.Handler
	out[AnnotationConfig] = base64.StdEncoding.EncodeToString(blob)
	return nil
}

// ReadRow reads a container's row back from its spec's annotations. It
// fails when a key is missing or malformed, naming it: such a spec was not
// written by this version of crisp.
func ReadRow(a map[string]string) (Row, error) {
	r := Row{
		SandboxID: a[AnnotationCrispSandboxID], Name: a[AnnotationCrispName], KubeName: a[AnnotationKubeName],
		Image: a[AnnotationImage], ImageRef: a[AnnotationImageRef], LogPath: a[AnnotationLogPath], Handler: a[AnnotationHandler],
	}
	for k, v := range map[string]string{AnnotationCrispSandboxID: r.SandboxID, AnnotationCrispName: r.Name,
		AnnotationKubeName: r.KubeName, AnnotationHandler: r.Handler} {
		if v == "" {
			return Row{}, fmt.Errorf("annotation %s is missing", k)
		}
	}
	attempt, err := strconv.ParseUint(a[AnnotationAttempt], 10, 32)
	if err != nil {
		return Row{}, fmt.Errorf("annotation %s: %w", AnnotationAttempt, err)
	}
	r.Attempt = uint32(attempt)
	if err := json.Unmarshal([]byte(a[AnnotationLabels]), &r.Labels); err != nil {
		return Row{}, fmt.Errorf("annotation %s: %w", AnnotationLabels, err)
	}
	if err := json.Unmarshal([]byte(a[AnnotationCRIAnnotations]), &r.Annotations); err != nil {
		return Row{}, fmt.Errorf("annotation %s: %w", AnnotationCRIAnnotations, err)
	}
	if a[AnnotationConfig] == "" {
		return Row{}, fmt.Errorf("annotation %s is missing", AnnotationConfig)
	}
	if r.Config, err = base64.StdEncoding.DecodeString(a[AnnotationConfig]); err != nil {
		return Row{}, fmt.Errorf("annotation %s: %w", AnnotationConfig, err)
	}
	if err := proto.Unmarshal(r.Config, &runtimeapi.ContainerConfig{}); err != nil {
		return Row{}, fmt.Errorf("annotation %s: %w", AnnotationConfig, err)
	}
	return r, nil
}
