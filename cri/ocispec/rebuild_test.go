package ocispec

import (
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// rowKeys are the annotations rowAnnotations adds to every container.
var rowKeys = []string{AnnotationCrispSandboxID, AnnotationCrispName, AnnotationKubeName, AnnotationAttempt,
	AnnotationLabels, AnnotationCRIAnnotations, AnnotationImage, AnnotationHandler, AnnotationConfig}

func TestRowRoundTrip(t *testing.T) {
	s, err := buildSpec(t, func(in *ContainerInput) {
		in.Config.Metadata.Attempt = 3
		in.Config.Labels = map[string]string{"app": "web", "tier": "front"}
		in.Config.Annotations = map[string]string{"note": "x", "io.kubernetes.cri.sandbox-id": "dropped from the spec, kept in the row"}
		in.ImageRef, in.LogPath = "sha256:abc", "/var/log/pods/x/app/3.log"
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadRow(s.Annotations)
	if err != nil {
		t.Fatal(err)
	}
	in := testInput()
	cfg := &runtimeapi.ContainerConfig{}
	if err := proto.Unmarshal(got.Config, cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Metadata.Attempt != 3 || cfg.Labels["tier"] != "front" || cfg.Image.Image != in.Config.Image.Image {
		t.Errorf("ReadRow().Config = %v, want the container's config", cfg)
	}
	got.Config = nil
	want := Row{SandboxID: in.Sandbox.ID, Name: in.Name, KubeName: "app", Attempt: 3, Image: in.Config.Image.Image,
		ImageRef: "sha256:abc", LogPath: "/var/log/pods/x/app/3.log", Handler: in.Sandbox.Handler,
		Labels:      map[string]string{"app": "web", "tier": "front"},
		Annotations: map[string]string{"note": "x", "io.kubernetes.cri.sandbox-id": "dropped from the spec, kept in the row"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadRow() = %+v, want %+v", got, want)
	}
}

func TestReadRowRefusesForeignSpecs(t *testing.T) {
	s, err := buildSpec(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{AnnotationCrispSandboxID, AnnotationAttempt, AnnotationLabels, AnnotationConfig} {
		a := map[string]string{}
		for kk, v := range s.Annotations {
			if kk != k {
				a[kk] = v
			}
		}
		if _, err := ReadRow(a); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("ReadRow() without %s = %v, want an error naming it", k, err)
		}
	}
}
