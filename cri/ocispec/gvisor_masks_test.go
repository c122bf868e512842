package ocispec

import (
	"os"
	"path/filepath"
	"testing"
)

// Paths resolve inside the rootfs: an image's absolute symlink points a
// read-only bind at the rootfs's own directory, never the host's; /proc,
// /sys and missing paths get no mount; masks come after read-only paths.
func TestGVisorPathMounts(t *testing.T) {
	rootfs := t.TempDir()
	for _, d := range []string{"etc", "data/sub"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc/group"), []byte("root:x:0:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(rootfs, "escape")); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	in := &ContainerInput{RootfsPath: rootfs, Rootfs: root.FS()}
	ms, err := gvisorPathMounts(in, []string{"/etc/group", "/data", "/proc/kcore", "/sys/firmware", "/missing"},
		[]string{"/escape", "/proc/sys", "/nothing"})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ dest, typ, src string }{
		{"/escape", "bind", filepath.Join(rootfs, "etc")},
		{"/etc/group", "bind", "/dev/null"},
		{"/data", "tmpfs", "tmpfs"},
	}
	if len(ms) != len(want) {
		t.Fatalf("mounts = %+v, want %d", ms, len(want))
	}
	for i, w := range want {
		if ms[i].Destination != w.dest || ms[i].Type != w.typ || ms[i].Source != w.src {
			t.Errorf("mount %d = %+v, want %s %s from %s", i, ms[i], w.dest, w.typ, w.src)
		}
	}
	if _, err := gvisorPathMounts(in, []string{"/"}, nil); err == nil {
		t.Error("masking / was accepted")
	}
}
