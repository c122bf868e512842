package layout

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestPaths pins where a container's files are under the run dir: conmon,
// crisp's monitor and whoever cleans up after them must agree on these.
func TestPaths(t *testing.T) {
	l := New("/run/crisp/") // cleaned
	if got := l.RunDir(); got != "/run/crisp" {
		t.Errorf("RunDir() = %q, want /run/crisp", got)
	}
	c := l.Container("abc")
	for _, tc := range []struct{ name, got, want string }{
		{"Bundles", l.Bundles(), "/run/crisp/c"},
		{"Exits", l.Exits(), "/run/crisp/exits"},
		{"Attach", l.Attach(), "/run/crisp/attach"},
		{"Pods", l.Pods(), "/run/crisp/pods"},
		{"NetNS", l.NetNS(), "/run/crisp/netns"},
		{"ID", c.ID, "abc"},
		{"Bundle", c.Bundle, "/run/crisp/c/abc"},
		{"ExitFile", c.ExitFile, "/run/crisp/exits/abc"},
		{"Spec", c.Spec(), "/run/crisp/c/abc/config.json"},
		{"Rootfs", c.Rootfs(), "/run/crisp/c/abc/rootfs"},
		{"InitPidFile", c.InitPidFile(), "/run/crisp/c/abc/pidfile"},
		{"ConmonPidFile", c.ConmonPidFile(), "/run/crisp/c/abc/conmon.pid"},
		{"ConmonLog", c.ConmonLog(), "/run/crisp/c/abc/conmon.log"},
		{"CtlFifo", c.CtlFifo(), "/run/crisp/c/abc/ctl"},
		{"AttachSocket", c.AttachSocket(), "/run/crisp/c/abc/attach"},
		{"MonitorPidFile", c.MonitorPidFile(), "/run/crisp/c/abc/monitor.pid"},
		{"MonitorLog", c.MonitorLog(), "/run/crisp/c/abc/monitor.log"},
		{"MonitorSocket", c.MonitorSocket(), "/run/crisp/c/abc/monitor.sock"},
		{"PersistDir", c.PersistDir(), "/run/crisp/c/abc"},
		{"PersistExitFile", c.PersistExitFile(), "/run/crisp/c/abc/exit"},
		{"OOMFile", c.OOMFile(), "/run/crisp/c/abc/oom"},
		{"ConsoleLog", c.ConsoleLog(), "/run/crisp/c/abc/console.log"},
		{"InfraLog", c.InfraLog(), "/run/crisp/c/abc/infra.log"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	pids := c.MonitorPidFiles()
	want := []string{c.InitPidFile(), c.ConmonPidFile(), c.MonitorPidFile()}
	if len(pids) != len(want) {
		t.Fatalf("MonitorPidFiles() = %q, want %q", pids, want)
	}
	for i := range want {
		if pids[i] != want[i] {
			t.Errorf("MonitorPidFiles() = %q, want %q", pids, want)
		}
	}
	dirs := l.Dirs()
	for _, d := range []string{l.Bundles(), l.Exits(), l.Attach(), l.Pods(), l.NetNS()} {
		found := false
		for _, e := range dirs {
			found = found || e == d
		}
		if !found {
			t.Errorf("Dirs() = %q lacks %s", dirs, d)
		}
	}
}

func TestCheckID(t *testing.T) {
	for _, id := range []string{"", ".", "..", "a/b", "/a", "a\x00b"} {
		if err := CheckID(id); err == nil {
			t.Errorf("CheckID(%q) = nil, want an error", id)
		}
	}
	for _, id := range []string{"a", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "a.b", "...", "a-b_c"} {
		if err := CheckID(id); err != nil {
			t.Errorf("CheckID(%q) = %v, want nil", id, err)
		}
	}
}

func TestRemoveFiles(t *testing.T) {
	l := New(t.TempDir())
	c := l.Container("c1")
	other := l.Container("c2")
	for _, d := range []string{c.Bundle, other.Bundle, l.Exits()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{c.Spec(), c.ConmonPidFile(), c.ExitFile, other.ExitFile} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Twice: the second time there is nothing left to remove.
	for i := range 2 {
		if err := c.RemoveFiles(); err != nil {
			t.Fatalf("RemoveFiles() #%d = %v", i+1, err)
		}
		for _, p := range []string{c.Bundle, c.ExitFile} {
			if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s after RemoveFiles: %v, want it gone", p, err)
			}
		}
	}
	for _, p := range []string{other.Bundle, other.ExitFile, l.Exits(), l.Bundles()} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s after removing another container's files: %v", p, err)
		}
	}
	// Neither exists, nor does the exits dir: still no error.
	if err := New(filepath.Join(t.TempDir(), "none")).Container("c1").RemoveFiles(); err != nil {
		t.Errorf("RemoveFiles() under a missing run dir = %v", err)
	}
	// An id that is no single path element removes nothing.
	for _, id := range []string{"", ".", ".."} {
		if err := l.Container(id).RemoveFiles(); err == nil {
			t.Errorf("Container(%q).RemoveFiles() = nil, want an error", id)
		}
	}
	if _, err := os.Stat(other.Bundle); err != nil {
		t.Errorf("another container's bundle after RemoveFiles of a bad id: %v", err)
	}
}

func TestSpec(t *testing.T) {
	l := New(t.TempDir())
	c := l.Container("c1")
	if err := os.MkdirAll(c.Bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	also := t.TempDir()
	spec := &specs.Spec{Version: specs.Version, Hostname: "h", Process: &specs.Process{Env: []string{"SECRET=1"}}}
	if err := c.WriteSpec(spec, also); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{c.Spec(), filepath.Join(also, SpecFileName)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s mode %v, want 0600 (it holds the environment)", p, perm)
		}
		got, err := ReadSpec(p)
		if err != nil || got.Hostname != "h" || got.Process == nil || len(got.Process.Env) != 1 {
			t.Errorf("ReadSpec(%s) = %+v, %v", p, got, err)
		}
	}
	if got, err := c.ReadSpec(); err != nil || got.Hostname != "h" {
		t.Errorf("ReadSpec() = %+v, %v", got, err)
	}
	if _, err := l.Container("none").ReadSpec(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadSpec(no spec) = %v, want ErrNotExist", err)
	}
	if err := os.WriteFile(c.Spec(), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadSpec(); err == nil {
		t.Error("ReadSpec(malformed) = nil error")
	}
}
