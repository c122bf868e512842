package ocispec

import (
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db/record"
)

// recordKeys are the annotations of the record every container's spec
// carries.
var recordKeys = []string{record.AnnotationVersion, record.AnnotationSandboxID, record.AnnotationName,
	record.AnnotationKubeName, record.AnnotationAttempt, record.AnnotationLabels, record.AnnotationAnnotations,
	record.AnnotationImage, record.AnnotationHandler, record.AnnotationConfig}

// TestSpecCarriesRecord: what ForContainer writes, db/record reads back as
// the container's row.
func TestSpecCarriesRecord(t *testing.T) {
	s, err := buildSpec(t, func(in *ContainerInput) {
		in.Config.Metadata.Attempt = 3
		in.Config.Labels = map[string]string{"app": "web", "tier": "front"}
		in.Config.Annotations = map[string]string{"note": "x", "io.kubernetes.cri.sandbox-id": "dropped from the spec, kept in the record"}
		in.ImageRef, in.LogPath = "sha256:abc", "/var/log/pods/x/app/3.log"
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := record.ReadContainer(s.Annotations)
	if err != nil {
		t.Fatal(err)
	}
	in := testInput()
	cfg := &runtimeapi.ContainerConfig{}
	if err := proto.Unmarshal(got.Config, cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Metadata.Attempt != 3 || cfg.Labels["tier"] != "front" || cfg.Image.Image != in.Config.Image.Image {
		t.Errorf("ReadContainer().Config = %v, want the container's config", cfg)
	}
	got.Config = nil
	want := record.Container{Version: record.Version, SandboxID: in.Sandbox.ID, Name: in.Name, KubeName: "app", Attempt: 3,
		Image: in.Config.Image.Image, ImageRef: "sha256:abc", LogPath: "/var/log/pods/x/app/3.log", Handler: in.Sandbox.Handler,
		Labels:      map[string]string{"app": "web", "tier": "front"},
		Annotations: map[string]string{"note": "x", "io.kubernetes.cri.sandbox-id": "dropped from the spec, kept in the record"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadContainer() = %+v, want %+v", got, want)
	}
}

// TestSpecRefusesRecordless: a container whose record could not be read
// back is refused before it exists, naming what is missing.
func TestSpecRefusesRecordless(t *testing.T) {
	_, err := buildSpec(t, func(in *ContainerInput) { in.Sandbox.Handler = "" })
	if err == nil || !strings.Contains(err.Error(), record.AnnotationHandler) {
		t.Errorf("ForContainer() without a handler = %v, want an error naming %s", err, record.AnnotationHandler)
	}
}
