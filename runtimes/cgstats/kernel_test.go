package cgstats

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// inMountNS is set in the copy of the test binary that runs in a private
// mount namespace.
const inMountNS = "CGSTATS_TEST_IN_MOUNT_NS"

// The v2 reader on the kernel's own cgroup2 files: the test re-runs
// itself in a private mount namespace (unshare -m), mounts cgroup2 on a
// temp dir there (the host's unified hierarchy; on this hybrid host no
// controller is enabled in it), makes a cgroup, moves itself in, burns
// some CPU and reads it. The cgroup is removed after.
func TestReadV2Kernel(t *testing.T) {
	if os.Geteuid() != 0 {
		failInCI(t, "mounting cgroup2 needs root")
		t.Skip("mounting cgroup2 needs root")
	}
	if os.Getenv(inMountNS) == "" {
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			failInCI(t, "no unshare(1)")
			t.Skip("no unshare(1)")
		}
		cmd := exec.Command(unshare, "-m", os.Args[0], "-test.run=^TestReadV2Kernel$", "-test.v")
		cmd.Env = append(os.Environ(), inMountNS+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestReadV2Kernel") {
			t.Fatalf("in a private mount namespace: %v\n%s", err, out)
		}
		t.Logf("in a private mount namespace:\n%s", out)
		return
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make / private: %v", err)
	}
	root := t.TempDir()
	if err := unix.Mount("none", root, "cgroup2", 0, ""); err != nil {
		t.Skipf("mount cgroup2: %v", err)
	}
	defer unix.Unmount(root, unix.MNT_DETACH)
	home := ownCgroup2(t)
	name := fmt.Sprintf("/crisp-cgstats-test-%d", os.Getpid())
	if err := os.Mkdir(filepath.Join(root, name), 0o755); err != nil {
		t.Fatal(err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	defer func() {
		if err := os.WriteFile(filepath.Join(root, home, "cgroup.procs"), pid, 0); err != nil {
			t.Errorf("move back to %s: %v", home, err)
		}
		if err := os.Remove(filepath.Join(root, name)); err != nil {
			t.Errorf("remove test cgroup: %v", err)
		}
	}()
	if err := os.WriteFile(filepath.Join(root, name, "cgroup.procs"), pid, 0); err != nil {
		t.Fatal(err)
	}
	x := 0
	for i := range 50_000_000 {
		x += i % 7
	}
	r := NewAt(nil, root)
	s, err := r.Read(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cgroup2 sample: cpu %+v, memory %+v, pids %+v", s.CPU, s.Memory, s.Pids)
	if s.CPU == nil || s.CPU.UsageNanos == 0 {
		t.Errorf("CPU = %+v after a busy loop (%d), want usage", s.CPU, x)
	}
	if _, err := os.Stat(filepath.Join(root, name, "cpu.pressure")); err == nil && (s.CPU == nil || s.CPU.PSI == nil) {
		t.Error("cpu.pressure is there but the sample has no CPU PSI")
	}
	if _, err := os.Stat(filepath.Join(root, name, "memory.current")); err != nil && s.Memory != nil {
		t.Errorf("Memory = %+v without a memory controller, want nil", s.Memory)
	}
	if _, err := r.Read(name + "-gone"); err == nil {
		t.Error("Read(missing cgroup) succeeded")
	}
}

// ownCgroup2 is this process's cgroup in the unified hierarchy ("0::").
func ownCgroup2(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	t.Skip("this process has no cgroup2 membership")
	return ""
}

// failInCI fails a test that would skip for want of root or a tool: CI
// runs as root with every tool, so there a skip would hide a broken run.
func failInCI(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI must run this test: %s", why)
	}
}
