package cri

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestPrepareLogStaysInTheLogDirectory: a symlink in the pod's log
// directory cannot lead the log of a new container (which conmon, as root,
// appends to) anywhere else.
func TestPrepareLogStaysInTheLogDirectory(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	os.Symlink(outside, filepath.Join(dir, "evil"))
	os.Symlink(filepath.Join(outside, "target"), filepath.Join(dir, "link.log"))
	os.Mkdir(filepath.Join(dir, "fifo-dir"), 0o755)
	tests := []struct {
		logPath string
		ok      bool
	}{
		{"app/0.log", true},
		{"app/1.log", true},
		{"evil/x.log", false},
		{"evil/sub/x.log", false},
		{"link.log", false},
		{"fifo-dir", false},
	}
	for _, tt := range tests {
		err := prepareLog(dir, tt.logPath)
		if (err == nil) != tt.ok {
			t.Errorf("prepareLog(%q) = %v, want ok %v", tt.logPath, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("prepareLog(%q) = %v, want a validation error", tt.logPath, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "app")); err != nil || !fi.IsDir() {
		t.Errorf("app/ was not made: %v", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("something was made outside the log directory: %v", entries)
	}
}
