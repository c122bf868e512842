package oci

import (
	"context"
	"os/exec"
	"testing"

	"github.com/crisp-cri/crisp/runtimes/layout"
)

func TestParseFeatures(t *testing.T) {
	out := []byte(`{"ociVersionMin":"1.0.0","mountOptions":["bind","nosuid","noexec","nodev","rro","ro"]}`)
	f, err := parseFeatures(out, true)
	if err != nil || !f.RecursiveReadOnly || !f.HasMountOptions("noexec", "nodev", "nosuid") || f.HasMountOptions("idmap") {
		t.Errorf("parseFeatures() = %+v, %v; want rro and noexec,nodev,nosuid", f, err)
	}
	if f, _ := parseFeatures(out, false); f.RecursiveReadOnly {
		t.Error("rro without mount_setattr in the kernel was advertised")
	}
	if f, _ := parseFeatures([]byte(`{"mountOptions":["ro"]}`), true); f.RecursiveReadOnly {
		t.Error("rro advertised for a runtime that does not list it")
	}
	if _, err := parseFeatures([]byte(`usage: runsc <flags>`), true); err == nil {
		t.Error("parseFeatures(not JSON) succeeded")
	}
}

// The host's runc (≥ 1.1) lists rro, and this kernel (≥ 5.12) has
// mount_setattr.
func TestProbeFeatures(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("SKIPPED: runc is not installed (make deps installs it)")
	}
	r := New(Handler{Name: "runc", Path: runc, Root: t.TempDir()}, "", layout.New(t.TempDir()), nil)
	f, err := r.ProbeFeatures(context.Background())
	if err != nil || !f.RecursiveReadOnly || !f.HasMountOptions("noexec", "nodev", "nosuid") {
		t.Errorf("runc features = %+v, %v", f, err)
	}
}
