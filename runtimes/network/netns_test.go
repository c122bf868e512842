package network

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestNetNSLifecycle(t *testing.T) {
	requireNetwork(t)
	m := newTestManager(t, testConfList(testIPAM(testSubnet, t.TempDir())))

	start := time.Now()
	path, err := m.NewNetNS("pin-a")
	if err != nil {
		t.Fatalf("NewNetNS() error = %v", err)
	}
	t.Logf("pin took %v", time.Since(start))
	t.Cleanup(func() { _ = m.RemoveNetNS(path) })

	if want := filepath.Join(m.netnsDir, "pin-a"); path != want {
		t.Errorf("NewNetNS() = %q, want %q", path, want)
	}
	if !isMounted(t, path) {
		t.Fatalf("%s is not a mount point", path)
	}
	var host, pinned unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &host); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(path, &pinned); err != nil {
		t.Fatal(err)
	}
	if host.Ino == pinned.Ino {
		t.Fatalf("pinned netns is the host's (inode %d)", host.Ino)
	}
	if got, want := nsLinks(t, path), []string{"lo"}; !slices.Equal(got, want) {
		t.Errorf("links in new netns = %v, want %v", got, want)
	}
	// lo is up: 127.0.0.1 answers inside the namespace.
	dialEcho(t, path, echoOnce(t, path, "127.0.0.1:0"))

	if _, err := m.NewNetNS("pin-a"); !errors.Is(err, fs.ErrExist) {
		t.Errorf("NewNetNS(existing) error = %v, want fs.ErrExist", err)
	}
	pins, err := m.Pins()
	if err != nil {
		t.Fatalf("Pins() error = %v", err)
	}
	if want := map[string]string{"pin-a": path}; !maps.Equal(pins, want) {
		t.Errorf("Pins() = %v, want %v", pins, want)
	}

	for i := range 2 { // idempotent
		if err := m.RemoveNetNS(path); err != nil {
			t.Fatalf("RemoveNetNS() #%d error = %v", i+1, err)
		}
	}
	if isMounted(t, path) {
		t.Errorf("%s is still mounted after RemoveNetNS", path)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat %s after RemoveNetNS: err = %v, want not exist", path, err)
	}
	if pins, _ := m.Pins(); len(pins) != 0 {
		t.Errorf("Pins() after RemoveNetNS = %v, want none", pins)
	}
}

func TestRemoveNetNSLeftoverFile(t *testing.T) {
	requireNetwork(t)
	m := newTestManager(t, testConfList(testIPAM(testSubnet, t.TempDir())))
	// A crash between creating the pin file and mounting on it leaves a
	// plain file behind.
	if err := os.MkdirAll(m.netnsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(m.netnsDir, "half-made")
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveNetNS(path); err != nil {
		t.Fatalf("RemoveNetNS(unmounted file) error = %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat %s: err = %v, want not exist", path, err)
	}
}

// The checks below need neither root nor plugins.

func TestNetNSRejects(t *testing.T) {
	dir := t.TempDir()
	m, err := New(Config{ConfDir: confDir(t, testConfList(testIPAM(testSubnet, dir))), CacheDir: dir + "/cache",
		NetNSDir: dir + "/netns", PluginDirs: []string{dir}}, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	for _, id := range []string{"", ".", "..", "a/b", "../x", "nul\x00"} {
		if _, err := m.NewNetNS(id); err == nil {
			t.Errorf("NewNetNS(%q) error = nil, want invalid id", id)
		}
	}
	for _, p := range []string{"/run/netns/x", dir + "/elsewhere/x", dir + "/netns", dir + "/netns/a/b"} {
		if err := m.RemoveNetNS(p); err == nil {
			t.Errorf("RemoveNetNS(%q) error = nil, want refusal outside NetNSDir", p)
		}
	}
	if pins, err := m.Pins(); err != nil || len(pins) != 0 {
		t.Errorf("Pins() on missing dir = %v, %v; want empty, nil", pins, err)
	}
}
