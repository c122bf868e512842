package oci

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crisp-cri/crisp/runtimes/layout"
)

// Real binaries and the fixed state roots the integration tests use, so
// that leftovers can be listed after a run:
// runc --root /run/crisp-oci-test/runc list.
const (
	conmonBin  = "/usr/bin/conmon"
	runcBin    = "/usr/sbin/runc"
	runscBin   = "/usr/local/sbin/runsc" // the pinned gVisor of `make deps`
	busyboxBin = "/bin/busybox"
	testRoot   = "/run/crisp-oci-test"
	cgroupBase = "crisp-test" // test cgroups live under /<cgroupBase>/ on every hierarchy
)

// skipOrFail skips the test, or fails it when the CI environment variable
// is set: in CI a missing prerequisite is a broken machine, not a reason.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but %s", msg)
	}
	t.Skipf("SKIP (set CI=1 to make this fail): %s", msg)
}

// needRoot skips (or fails in CI) unless running as root with the given
// binaries and busybox installed.
func needRoot(t *testing.T, bins ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "integration test needs root")
	}
	for _, b := range append([]string{conmonBin, busyboxBin}, bins...) {
		if _, err := os.Stat(b); err != nil {
			skipOrFail(t, "integration test needs %s: %v", b, err)
		}
	}
}

// newTestRuntime returns a Runtime for typ with a real binary and the
// fixed test root, keeping its containers' files under a new run dir.
// runsc gets --network=none.
func newTestRuntime(t *testing.T, typ string) *Runtime {
	t.Helper()
	h := Handler{Name: typ, Type: typ, Path: runcBin, Root: filepath.Join(testRoot, typ)}
	if typ == TypeRunsc {
		h.Path, h.Platform = runscBin, "systrap"
		h.ExtraArgs = []string{"--network=none"}
	}
	needRoot(t, h.Path)
	return New(h, conmonBin, layout.New(newRunDir(t)), nil)
}

// newRunDir makes a run dir, removed at cleanup. It is short on purpose,
// not t.TempDir(): that is named after the test, and a long name would
// push a bundle's sockets (<run>/c/<id>/monitor.sock) past the 107 bytes
// of a socket path. Mode 0755: runsc's sandbox runs as nobody.
func newRunDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "crisp-oci-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func randomID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "crisptest" + hex.EncodeToString(b)
}

// testSpec is a minimal spec for a busybox rootfs.
func testSpec(id string, args []string) *specs.Spec {
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	return &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: "crisp-test",
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/bin"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			NoNewPrivileges: true,
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/" + cgroupBase + "/" + id,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace},
			},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
		},
	}
}

// newBundle writes the bundle of a new container, where rt's layout puts
// it, for args (edited by mutate, if not nil), and returns CreateOpts for
// it and its files. It registers a cleanup that kills and deletes the
// container, waits for its monitor and removes its cgroups, whether or
// not the test created it or failed.
func newBundle(t *testing.T, rt *Runtime, args []string, mutate func(*specs.Spec)) (CreateOpts, layout.Container) {
	t.Helper()
	id := randomID(t)
	files := rt.files.Container(id)
	// Mode 0755 everywhere: runsc's sandbox runs as nobody.
	bin := filepath.Join(files.Bundle, "rootfs", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(busyboxBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sh", "sleep", "echo", "cat", "true", "false", "id", "ps", "grep"} {
		if err := os.Symlink("busybox", filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	spec := testSpec(id, args)
	if mutate != nil {
		mutate(spec)
	}
	if err := files.WriteSpec(spec); err != nil {
		t.Fatal(err)
	}
	opts := CreateOpts{ID: id, LogPath: filepath.Join(files.Bundle, "logs", "ctr.log")}
	t.Cleanup(func() { cleanupContainer(t, rt, files) })
	return opts, files
}

func cleanupContainer(t *testing.T, rt *Runtime, files layout.Container) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = rt.Kill(ctx, files.ID, syscall.SIGKILL, true)
	if err := rt.Delete(ctx, files.ID, true); err != nil && !errors.Is(err, ErrNotFound) {
		t.Errorf("cleanup: %v", err)
	}
	if pid, err := readPidFile(files.ConmonPidFile()); err == nil {
		if !waitFor(5*time.Second, func() bool { return !conmonAlive(pid) }) {
			t.Errorf("cleanup: conmon %d still running; killing it", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if pid, err := readPidFile(files.MonitorPidFile()); err == nil {
		if !waitFor(5*time.Second, func() bool { return !isMonitorOf(pid, files.ID) }) {
			t.Errorf("cleanup: monitor %d still running; killing it", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if data, err := os.ReadFile(files.MonitorLog()); err == nil && strings.Contains(string(data), "DATA RACE") {
		t.Errorf("race in the monitor:\n%s", data)
	}
	removeTestCgroups(t, files.ID)
}

// exitFileCode reads one exit file as its monitor wrote it; ok is false
// while there is none (or it is still empty). Unlike ReadExit it looks at
// that file alone.
func exitFileCode(path string) (code int32, ok bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return parseExitCode(data)
}

// conmonAlive reports whether pid is a conmon that has not exited (a
// zombie waiting for PID 1 counts as exited).
func conmonAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) S ...
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || !strings.Contains(s[:i], "(conmon") {
		return false
	}
	return !strings.HasPrefix(s[i+1:], " Z")
}

// removeTestCgroups removes /<cgroupBase>/<id>* on every hierarchy (runc
// leaves parents behind, and conmon's CgroupParent is ours to remove),
// the monitor's cgroup under it first, then /<cgroupBase> itself if it is
// empty.
func removeTestCgroups(t *testing.T, id string) {
	monitors, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cgroupBase, id+"*", "crisp-monitor-*"))
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cgroupBase, id+"*"))
	for _, d := range append(monitors, dirs...) {
		ok := waitFor(5*time.Second, func() bool {
			err := syscall.Rmdir(d)
			return err == nil || errors.Is(err, syscall.ENOENT)
		})
		if !ok {
			t.Errorf("cleanup: cannot remove cgroup %s", d)
		}
	}
	bases, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cgroupBase))
	for _, b := range bases {
		_ = syscall.Rmdir(b)
	}
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
