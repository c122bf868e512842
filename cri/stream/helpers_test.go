package stream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crisp-cri/crisp/runtimes/layout"
	"github.com/crisp-cri/crisp/runtimes/oci"
)

// Real binaries, and the fixed state root the tests use, so that leftovers
// can be listed after a run: runc --root /run/crisp-stream-test/runc list.
const (
	conmonBin  = "/usr/bin/conmon"
	runcBin    = "/usr/sbin/runc"
	busyboxBin = "/bin/busybox"
	testRoot   = "/run/crisp-stream-test"
	cgroupBase = "crisp-stream-test" // test cgroups live under /<cgroupBase>/ on every hierarchy
)

// skipOrFail skips the test, or fails it when the CI environment variable
// is set: in CI a missing prerequisite is a broken machine.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but %s", msg)
	}
	t.Skipf("SKIP (set CI=1 to make this fail): %s", msg)
}

// needRoot skips (or fails in CI) unless running as root with runc,
// conmon, busybox and whatever else is named.
func needRoot(t *testing.T, bins ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "integration test needs root")
	}
	for _, b := range append([]string{runcBin, conmonBin, busyboxBin}, bins...) {
		if _, err := os.Stat(b); err != nil {
			skipOrFail(t, "integration test needs %s: %v", b, err)
		}
	}
}

func randomID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "crispstream" + hex.EncodeToString(b)
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// ctrOpts describe a test container.
type ctrOpts struct {
	tty, stdin, stdinOnce bool
	netns                 string // network namespace path; "" for a new one
}

// testContainer is a running container made by startContainer.
type testContainer struct {
	id    string
	files layout.Container // its bundle, with conmon's attach socket and ctl FIFO
	opts  ctrOpts
}

// startContainer creates and starts a busybox container running args with
// real conmon and runc, under a run dir of its own, and registers its
// cleanup.
func startContainer(t *testing.T, args []string, o ctrOpts) testContainer {
	t.Helper()
	needRoot(t)
	ctx := testCtx(t)
	l := layout.New(newRunDir(t))
	rt := oci.New(oci.Handler{Name: "runc", Type: oci.TypeRunc, Path: runcBin, Root: filepath.Join(testRoot, "runc")}, conmonBin, l, nil)
	id := randomID(t)
	files := l.Container(id)
	writeBundle(t, files, testSpec(id, args, o))
	c := oci.CreateOpts{
		ID:       id,
		LogPath:  filepath.Join(files.Bundle, "logs", "ctr.log"),
		Terminal: o.tty, Stdin: o.stdin, StdinOnce: o.stdinOnce,
	}
	t.Cleanup(func() { cleanupContainer(t, rt, files) })
	if _, err := rt.Create(ctx, c); err != nil {
		t.Fatalf("Create() = %v", err)
	}
	if err := rt.Start(ctx, id); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	return testContainer{id: id, files: files, opts: o}
}

// newRunDir makes a run dir, removed at cleanup. It is short on purpose,
// not t.TempDir(): that is named after the test, and a long name would
// push the attach socket (<run>/c/<id>/attach) past the 107 bytes of a
// socket path.
func newRunDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "crisp-stream-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return dir
}

// writeBundle writes the container's config.json and a busybox rootfs
// into its bundle.
func writeBundle(t *testing.T, files layout.Container, spec *specs.Spec) {
	t.Helper()
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
	for _, name := range []string{"sh", "cat", "echo", "sleep", "stty", "tty", "nc", "true", "tr"} {
		if err := os.Symlink("busybox", filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := files.WriteSpec(spec); err != nil {
		t.Fatal(err)
	}
}

// testProcess is the process every test container (and exec) runs as.
func testProcess(args []string) specs.Process {
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	return specs.Process{
		Args: args,
		Env:  []string{"PATH=/bin"},
		Cwd:  "/",
		Capabilities: &specs.LinuxCapabilities{
			Bounding: caps, Effective: caps, Permitted: caps,
		},
		NoNewPrivileges: true,
	}
}

func testSpec(id string, args []string, o ctrOpts) *specs.Spec {
	p := testProcess(args)
	p.Terminal = o.tty
	return &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: "crisp-test",
		Process:  &p,
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/" + cgroupBase + "/" + id,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace, Path: o.netns},
			},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
		},
	}
}

// cleanupContainer kills and deletes the container, waits for its conmon
// to go and removes the test cgroups.
func cleanupContainer(t *testing.T, rt *oci.Runtime, files layout.Container) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = rt.Kill(ctx, files.ID, syscall.SIGKILL, true)
	if err := rt.Delete(ctx, files.ID, true); err != nil && !errors.Is(err, oci.ErrNotFound) {
		t.Errorf("cleanup: %v", err)
	}
	if data, err := os.ReadFile(files.ConmonPidFile()); err == nil {
		var pid int
		if _, err := fmt.Sscan(string(data), &pid); err == nil && pid > 0 {
			if !waitFor(5*time.Second, func() bool { return !conmonAlive(pid) }) {
				t.Errorf("cleanup: conmon %d still running; killing it", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cgroupBase, files.ID))
	for _, d := range dirs {
		if !waitFor(5*time.Second, func() bool {
			err := syscall.Rmdir(d)
			return err == nil || errors.Is(err, syscall.ENOENT)
		}) {
			t.Errorf("cleanup: cannot remove cgroup %s", d)
		}
	}
	bases, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cgroupBase))
	for _, b := range bases {
		_ = syscall.Rmdir(b) // fails while another test's cgroup is there
	}
}

// conmonAlive reports whether pid is a conmon that has not exited.
func conmonAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && strings.Contains(s[:i], "(conmon") && !strings.HasPrefix(s[i+1:], " Z")
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// newNetNS makes a named network namespace with lo up, removed at cleanup.
func newNetNS(t *testing.T) string {
	t.Helper()
	needRoot(t, "/usr/sbin/ip")
	name := randomID(t)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("cleanup: ip netns del %s: %v: %s", name, err, out)
		}
	})
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return "/var/run/netns/" + name
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}
