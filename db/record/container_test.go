package record

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
)

// fixtureAnnotations reads testdata's container-v0.json: every annotation
// of a container's config.json as crispd wrote it before versions.
func fixtureAnnotations(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "container-v0.json"))
	if err != nil {
		t.Fatal(err)
	}
	var a map[string]string
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestReadContainerVersion0 reads the annotations crispd wrote before
// versions: an upgraded crispd must rebuild those containers.
func TestReadContainerVersion0(t *testing.T) {
	c, err := ReadContainer(fixtureAnnotations(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &runtimeapi.ContainerConfig{}
	if err := proto.Unmarshal(c.Config, cfg); err != nil {
		t.Fatal(err)
	}
	wantCfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app", Attempt: 3},
		Image:    &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:latest"},
		Command:  []string{"/bin/serve", "--port=8080"},
		Labels:   map[string]string{"app": "web", "tier": "front"},
		Annotations: map[string]string{"note": "x",
			"io.kubernetes.cri.sandbox-id": "kept in the record, not the spec"},
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
	if !proto.Equal(cfg, wantCfg) {
		t.Errorf("Config = %v\nwant     %v", cfg, wantCfg)
	}
	c.Config = nil
	want := Container{
		Version: 0, SandboxID: podID, Name: "k8s_app_web_shop_" + podUID + "_3", KubeName: "app", Attempt: 3,
		Image: "docker.io/library/busybox:latest", ImageRef: "sha256:4f1e5c2a",
		LogPath: podLogDir + "/app/3.log", Handler: "runc",
		Labels:      map[string]string{"app": "web", "tier": "front"},
		Annotations: map[string]string{"note": "x", "io.kubernetes.cri.sandbox-id": "kept in the record, not the spec"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("ReadContainer() = %+v\nwant                %+v", c, want)
	}
}

// TestContainerRow: the row's config hash is the CRI server's, of the
// config blob and the pod id.
func TestContainerRow(t *testing.T) {
	c, err := ReadContainer(fixtureAnnotations(t))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Row("c0ffee")
	want := db.Container{
		ID: "c0ffee", SandboxID: c.SandboxID, Name: c.Name, KubeName: "app", Attempt: 3, Image: c.Image, ImageRef: c.ImageRef,
		LogPath: c.LogPath, Labels: c.Labels, Annotations: c.Annotations, Config: c.Config,
		ConfigHash: db.ConfigHash(c.Config, podID),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Row() = %+v\nwant    %+v", got, want)
	}
}

func testContainer(t *testing.T) Container {
	t.Helper()
	blob, err := proto.MarshalOptions{Deterministic: true}.Marshal(&runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app", Attempt: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	return Container{
		SandboxID: podID, Name: "k8s_app_web_shop_uid_1", KubeName: "app", Attempt: 1, Image: "busybox",
		ImageRef: "sha256:abc", LogPath: "/var/log/pods/x/app/1.log", Handler: "runc",
		Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"note": "x"}, Config: blob,
	}
}

func TestContainerRoundTrip(t *testing.T) {
	want := testContainer(t)
	a := map[string]string{"io.kubernetes.cri.container-type": "container"}
	if err := WriteContainer(a, want); err != nil {
		t.Fatal(err)
	}
	if a[AnnotationVersion] != "1" || a["io.kubernetes.cri.container-type"] != "container" {
		t.Errorf("WriteContainer() gave %v, want version 1 and the other keys kept", a)
	}
	got, err := ReadContainer(a)
	want.Version = Version
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ReadContainer() = %+v, %v\nwant                %+v", got, err, want)
	}

	// Without an image id or a log path, their keys are left out.
	c := testContainer(t)
	c.ImageRef, c.LogPath, c.Labels, c.Annotations = "", "", nil, nil
	a = map[string]string{}
	if err := WriteContainer(a, c); err != nil {
		t.Fatal(err)
	}
	keys := []string{AnnotationAnnotations, AnnotationAttempt, AnnotationConfig, AnnotationName, AnnotationHandler,
		AnnotationImage, AnnotationKubeName, AnnotationLabels, AnnotationVersion, AnnotationSandboxID}
	if got := slices.Sorted(maps.Keys(a)); !slices.Equal(got, keys) {
		t.Errorf("WriteContainer() keys = %v\nwant                    %v", got, keys)
	}
	if got, err := ReadContainer(a); err != nil || got.ImageRef != "" || got.LogPath != "" || got.Labels != nil {
		t.Errorf("ReadContainer() = %+v, %v; want no image id, log path or labels", got, err)
	}
}

// TestContainerKeys pins the annotation keys: containers on nodes carry
// them, whatever the Go names become.
func TestContainerKeys(t *testing.T) {
	got := []string{AnnotationVersion, AnnotationSandboxID, AnnotationName, AnnotationKubeName, AnnotationAttempt,
		AnnotationLabels, AnnotationAnnotations, AnnotationImage, AnnotationImageRef, AnnotationLogPath,
		AnnotationHandler, AnnotationConfig}
	want := []string{"io.crisp.record-version", "io.crisp.sandbox-id", "io.crisp.container-name", "io.crisp.kube-name",
		"io.crisp.attempt", "io.crisp.labels", "io.crisp.annotations", "io.crisp.image", "io.crisp.image-ref",
		"io.crisp.log-path", "io.crisp.handler", "io.crisp.config"}
	if !slices.Equal(got, want) {
		t.Errorf("keys = %v\nwant   %v", got, want)
	}
	for _, k := range want[1:] {
		if _, ok := fixtureAnnotations(t)[k]; !ok {
			t.Errorf("%s is not in the version 0 fixture", k)
		}
	}
}

func TestReadContainerRefusesMalformed(t *testing.T) {
	for _, tc := range []struct {
		name, key, value string // value "-" deletes the key
		want             string
	}{
		{"no pod id", AnnotationSandboxID, "-", "annotation io.crisp.sandbox-id is missing"},
		{"no name", AnnotationName, "-", "annotation io.crisp.container-name is missing"},
		{"no kube name", AnnotationKubeName, "", "annotation io.crisp.kube-name is missing"},
		{"no handler", AnnotationHandler, "-", "annotation io.crisp.handler is missing"},
		{"no attempt", AnnotationAttempt, "-", "annotation io.crisp.attempt is missing"},
		{"attempt negative", AnnotationAttempt, "-1", "annotation io.crisp.attempt: "},
		{"attempt too big", AnnotationAttempt, "4294967296", "annotation io.crisp.attempt: "},
		{"no labels", AnnotationLabels, "-", "annotation io.crisp.labels is missing"},
		{"labels not an object", AnnotationLabels, `["a"]`, "annotation io.crisp.labels: "},
		{"no annotations", AnnotationAnnotations, "-", "annotation io.crisp.annotations is missing"},
		{"annotations not json", AnnotationAnnotations, `{"a":`, "annotation io.crisp.annotations: "},
		{"no config", AnnotationConfig, "-", "annotation io.crisp.config is missing"},
		{"config not base64", AnnotationConfig, "%%", "annotation io.crisp.config: illegal base64"},
		{"config not protobuf", AnnotationConfig, "/////w==", "annotation io.crisp.config: proto"},
		{"version not a number", AnnotationVersion, "one", `annotation io.crisp.record-version: "one" is not a version`},
		{"version empty", AnnotationVersion, "", `annotation io.crisp.record-version: "" is not a version`},
		{"version negative", AnnotationVersion, "-1", "annotation io.crisp.record-version: version -1 is invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := fixtureAnnotations(t)
			if tc.value == "-" {
				delete(a, tc.key)
			} else {
				a[tc.key] = tc.value
			}
			if _, err := ReadContainer(a); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ReadContainer() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestReadContainerRefusesNewerVersion: a later crispd's record is
// refused, not guessed at, even when its keys look familiar.
func TestReadContainerRefusesNewerVersion(t *testing.T) {
	a := map[string]string{}
	if err := WriteContainer(a, testContainer(t)); err != nil {
		t.Fatal(err)
	}
	a[AnnotationVersion] = "2"
	_, err := ReadContainer(a)
	want := "annotation io.crisp.record-version: version 2 is newer than this crispd reads (up to 1)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("ReadContainer(version 2) = %v, want %q", err, want)
	}
}

func TestWriteContainerRefusesWhatReadRefuses(t *testing.T) {
	for key, edit := range map[string]func(*Container){
		AnnotationSandboxID: func(c *Container) { c.SandboxID = "" },
		AnnotationName:      func(c *Container) { c.Name = "" },
		AnnotationKubeName:  func(c *Container) { c.KubeName = "" },
		AnnotationHandler:   func(c *Container) { c.Handler = "" },
		AnnotationConfig:    func(c *Container) { c.Config = nil },
	} {
		c := testContainer(t)
		edit(&c)
		a := map[string]string{"kept": "yes"}
		if err := WriteContainer(a, c); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("WriteContainer() without %s = %v, want an error naming it", key, err)
		}
		if len(a) != 1 {
			t.Errorf("WriteContainer() without %s added %v", key, a)
		}
	}
}
