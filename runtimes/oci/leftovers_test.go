package oci

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/crisp-cri/crisp/runtimes/layout"
)

func TestExitCodes(t *testing.T) {
	l := layout.New(t.TempDir())
	if err := os.MkdirAll(l.Exits(), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"a": "0", "b": "137\n", "c.Xy12ab": "1", "d": "", "e": "junk"} {
		if err := os.WriteFile(filepath.Join(l.Exits(), name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ExitCodes(l)
	if want := map[string]int32{"a": 0, "b": 137}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ExitCodes() = %v, %v; want %v", got, err, want)
	}
	if got, err := ExitCodes(layout.New(filepath.Join(t.TempDir(), "none"))); err != nil || len(got) != 0 {
		t.Errorf("ExitCodes(missing dir) = %v, %v; want empty", got, err)
	}
}

// strangerPidFiles writes our own pid, which is no conmon and no monitor
// of files.ID, into the container's monitor pid files.
func strangerPidFiles(t *testing.T, files layout.Container) {
	t.Helper()
	if err := os.MkdirAll(files.Bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	for _, f := range []string{files.ConmonPidFile(), files.MonitorPidFile()} {
		if err := os.WriteFile(f, pid, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKillMonitorLeavesStrangersAlone(t *testing.T) {
	files := layout.New(t.TempDir()).Container("x")
	strangerPidFiles(t, files)
	if MonitorAlive(files) {
		t.Error("MonitorAlive() = true for pid files naming a stranger")
	}
	if err := KillMonitor(files); err != nil {
		t.Fatal(err)
	}
	if err := KillMonitor(layout.New(t.TempDir()).Container("x")); err != nil {
		t.Errorf("KillMonitor(no pid files) = %v", err)
	}
}

// TestRemoveLeftovers: the bundle and the exit file go, a stranger named
// by the pid files is left alone (this test would not survive otherwise),
// and removing what is gone is no error.
func TestRemoveLeftovers(t *testing.T) {
	l := layout.New(t.TempDir())
	files := l.Container("x")
	strangerPidFiles(t, files)
	if err := os.MkdirAll(l.Exits(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files.ExitFile, []byte("0"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := l.Container("y")
	if err := os.MkdirAll(other.Bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := RemoveLeftovers(files); err != nil {
			t.Fatalf("RemoveLeftovers() = %v", err)
		}
		for _, p := range []string{files.Bundle, files.ExitFile} {
			if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s after RemoveLeftovers: %v, want it gone", p, err)
			}
		}
	}
	if _, err := os.Stat(other.Bundle); err != nil {
		t.Errorf("another container's bundle: %v", err)
	}
	if err := RemoveLeftovers(l.Container("..")); err == nil {
		t.Error("RemoveLeftovers(..) = nil error, want invalid id")
	}
}
