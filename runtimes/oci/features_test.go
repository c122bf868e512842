package oci

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run this test: runc is not installed (make deps installs it)")
		}
		t.Skip("SKIPPED: runc is not installed (make deps installs it)")
	}
	r := New(Handler{Name: "runc", Path: runc, Root: t.TempDir()}, "", layout.New(t.TempDir()), nil)
	f, err := r.ProbeFeatures(context.Background())
	if err != nil || !f.RecursiveReadOnly || !f.HasMountOptions("noexec", "nodev", "nosuid") {
		t.Errorf("runc features = %+v, %v", f, err)
	}
}

// A runtime's answer is kept in the run dir: the next probe with the same
// binary starts no process; a changed binary is asked again.
func TestProbeFeaturesCached(t *testing.T) {
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	bin := filepath.Join(dir, "fake-runtime")
	script := "#!/bin/sh\necho x >> " + calls + "\necho '{\"mountOptions\":[\"rro\",\"nodev\"]}'\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	l := layout.New(filepath.Join(dir, "run"))
	if err := os.MkdirAll(l.Features(), 0o700); err != nil {
		t.Fatal(err)
	}
	r := New(Handler{Name: "fake", Path: bin, Root: filepath.Join(dir, "root")}, "", l, nil)
	probe := func(wantCalls int) {
		t.Helper()
		f, err := r.ProbeFeatures(context.Background())
		if err != nil || !f.HasMountOptions("nodev") {
			t.Fatalf("ProbeFeatures() = %+v, %v", f, err)
		}
		b, _ := os.ReadFile(calls)
		if n := strings.Count(string(b), "x"); n != wantCalls {
			t.Errorf("runtime ran %d times, want %d", n, wantCalls)
		}
	}
	probe(1)
	probe(1) // from the run dir
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(bin, later, later); err != nil {
		t.Fatal(err)
	}
	probe(2) // another binary, as far as the cache can tell
	probe(2)
}
