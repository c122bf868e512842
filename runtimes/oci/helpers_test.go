package oci

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Real binaries and the fixed state roots the integration tests use, so
// that leftovers can be listed after a run:
// runc --root /run/crisp-oci-test/runc list.
const (
	conmonBin  = "/usr/bin/conmon"
	runcBin    = "/usr/sbin/runc"
	runscBin   = "/usr/bin/runsc"
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
// fixed test root. runsc gets --network=none.
func newTestRuntime(t *testing.T, typ string) *Runtime {
	t.Helper()
	h := Handler{Name: typ, Type: typ, Path: runcBin, Root: filepath.Join(testRoot, typ)}
	if typ == TypeRunsc {
		h.Path = runscBin
		h.ExtraArgs = []string{"--network=none"}
	}
	needRoot(t, h.Path)
	return New(h, conmonBin, nil)
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

// newBundle writes a bundle for args (edited by mutate, if not nil) and
// returns CreateOpts for it. It registers a cleanup that kills and
// deletes the container, waits for its conmon and removes its cgroups,
// whether or not the test created it or failed.
func newBundle(t *testing.T, rt *Runtime, args []string, mutate func(*specs.Spec)) CreateOpts {
	t.Helper()
	id := randomID(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "rootfs", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// Mode 0755 everywhere: runsc's sandbox runs as nobody.
	if err := os.Chmod(dir, 0o755); err != nil {
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
	cfg, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	opts := CreateOpts{
		ID:         id,
		Bundle:     dir,
		LogPath:    filepath.Join(dir, "logs", "ctr.log"),
		ExitDir:    filepath.Join(dir, "exits"),
		PersistDir: filepath.Join(dir, "persist"),
		SocketDir:  filepath.Join(dir, "sock"),
	}
	t.Cleanup(func() { cleanupContainer(t, rt, opts) })
	return opts
}

func cleanupContainer(t *testing.T, rt *Runtime, c CreateOpts) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = rt.Kill(ctx, c.ID, syscall.SIGKILL, true)
	if err := rt.Delete(ctx, c.ID, true); err != nil && !errors.Is(err, ErrNotFound) {
		t.Errorf("cleanup: %v", err)
	}
	if pid, err := readPidFile(filepath.Join(c.Bundle, conmonPidName)); err == nil {
		if !waitFor(5*time.Second, func() bool { return !conmonAlive(pid) }) {
			t.Errorf("cleanup: conmon %d still running; killing it", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if pid, err := readPidFile(filepath.Join(c.Bundle, monitorPidName)); err == nil {
		if !waitFor(5*time.Second, func() bool { return !isMonitorOf(pid, c.ID) }) {
			t.Errorf("cleanup: monitor %d still running; killing it", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if data, err := os.ReadFile(filepath.Join(c.Bundle, monitorLogName)); err == nil && strings.Contains(string(data), "DATA RACE") {
		t.Errorf("race in the monitor:\n%s", data)
	}
	removeTestCgroups(t, c.ID)
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
// then /<cgroupBase> itself if it is empty.
func removeTestCgroups(t *testing.T, id string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cgroupBase, id+"*"))
	for _, d := range dirs {
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
