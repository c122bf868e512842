package pod

import (
	"os"
	"path/filepath"
	"testing"
)

func TestUnpinLeavesOtherFiles(t *testing.T) {
	root := t.TempDir()
	dir := Dir(root, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The pod's record, and pin files whose mounts a reboot took away.
	for _, p := range []string{"sandbox.json", "ipcns", "utsns"} {
		if err := os.WriteFile(filepath.Join(dir, p), nil, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if err := Unpin(root, id); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "sandbox.json" {
		t.Errorf("after Unpin the pod dir holds %v, want only sandbox.json", entries)
	}
	if err := Unpin(root, "../x"); err == nil {
		t.Error("Unpin(bad id) = nil, want an error")
	}
}
