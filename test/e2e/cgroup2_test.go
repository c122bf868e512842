package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/runtimes/layout"
	"github.com/crisp-cri/crisp/test/harness"
)

// TestCgroup2 runs crispd on a unified cgroup v2 layout: in a private
// mount namespace whose /sys/fs/cgroup is cgroup2 (this host's controllers
// stay with its v1 hierarchies, so that tree has none, and the container
// asks for no limits). A runc pod with a shared PID namespace and a
// cgroup_parent, and its container, must land in the v2 tree: the
// container in <parent>/crisp-<id>, the infra process in
// <parent>/crisp-<pod>, nothing in the parent itself, conmon in crispd's
// own cgroup. ContainerStats reads cpu.stat there; left-over container and
// monitor cgroups in that tree go in a reconcile pass; and
// removing the pod leaves no cgroup, runc container, mount or process. A
// systemd slice as cgroup_parent is refused: crisp has no systemd driver.
func TestCgroup2(t *testing.T) {
	harness.RequireRoot(t)
	nsenter := harness.RequireTool(t, "nsenter")
	runcBin := harness.RequireTool(t, "runc")
	d := harness.Start(t, harness.WithPrivateCgroup2(), harness.WithTOML("[reconciler]\ninterval = \"1h\"\ngrace = \"1s\""))
	pid := d.PID()
	// The namespace's cgroup2 tree, as crispd sees it.
	tree := fmt.Sprintf("/proc/%d/root/sys/fs/cgroup", pid)
	var fs unix.Statfs_t
	if err := unix.Statfs(tree, &fs); err != nil || fs.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Fatalf("crispd's /sys/fs/cgroup: statfs type %#x, %v; want cgroup2 (%#x)", fs.Type, err, unix.CGROUP2_SUPER_MAGIC)
	}
	top := fmt.Sprintf("/crisp-e2e-cg2-%d", os.Getpid())
	parent := top + "/pod"
	runcRoot := filepath.Join(d.RunDir, "runc")
	// runc in crispd's namespace, where /sys/fs/cgroup is what it made the
	// containers' cgroups in.
	runc := func(args ...string) (string, error) {
		cmd := exec.Command(nsenter, append([]string{"--mount=/proc/" + strconv.Itoa(pid) + "/ns/mnt", "--", runcBin, "--root", runcRoot}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// Registered after Start, so it runs first, while crispd (and with it
	// the namespace) still lives: pods, then the test's own cgroups.
	t.Cleanup(func() { cleanupCgroup2(t, d, tree, top, parent) })

	image := withBusybox(t, d)
	rt := d.Runtime()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pc := podConfig("cg2")
	pc.Linux.CgroupParent = parent
	pc.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	pod, ctr := runPodWithContainer(t, d, image, pc, "")

	t.Run("placement", func(t *testing.T) {
		ctrCg := parent + "/crisp-" + ctr
		procs := cgroupProcs(t, tree, ctrCg)
		if len(procs) == 0 {
			t.Fatalf("container cgroup %s holds no process", ctrCg)
		}
		for _, p := range procs {
			if got := cgroup2Of(p); got != ctrCg {
				t.Errorf("container process %d is in cgroup2 %q, want %q", p, got, ctrCg)
			}
		}
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", ctrCg)); err == nil {
			t.Errorf("runc made %s on the v1 memory hierarchy too: it did not see a unified host", ctrCg)
		}
		// The CRI server gives runtimes no cgroup parent for monitors:
		// conmon stays in crispd's cgroup, out of the pod's.
		b, err := os.ReadFile(layout.New(d.RunDir).Container(ctr).ConmonPidFile())
		if err != nil {
			t.Fatal(err)
		}
		conmon, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if got, want := cgroup2Of(conmon), cgroup2Of(pid); comm(conmon) != "conmon" || got != want {
			t.Errorf("conmon %d (%s) is in cgroup2 %q, want crispd's %q", conmon, comm(conmon), got, want)
		}
		infraCg := parent + "/crisp-" + pod
		infra := cgroupProcs(t, tree, infraCg)
		if len(infra) != 1 || !strings.Contains(cmdline(infra[0]), "pause") {
			t.Errorf("infra cgroup %s holds %v, want the pod's infra process", infraCg, infra)
		}
		if own := cgroupProcs(t, tree, parent); len(own) != 0 {
			t.Errorf("the pod's cgroup_parent %s holds processes %v itself, want none (cgroup v2 leaves)", parent, own)
		}
	})

	t.Run("stats", func(t *testing.T) {
		execOut(t, d, ctr, "sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
		s := waitStats(ctx, t, d, ctr, "with cpu", func(s *runtimeapi.ContainerStats) bool {
			return s.Cpu.GetUsageCoreNanoSeconds().GetValue() > 0
		})
		// Read after the stats: the counter only grows.
		usec := cpuStatUsage(t, filepath.Join(tree, parent, "crisp-"+ctr))
		if got := s.Cpu.GetUsageCoreNanoSeconds().GetValue(); got > usec*1000 || got < 1_000_000 {
			t.Errorf("ContainerStats cpu = %d ns; cpu.stat says %d µs since: want at least 1 ms of the busy loop, at most cpu.stat's", got, usec)
		}
		r, err := rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: pod})
		if err != nil {
			t.Fatalf("PodSandboxStats() = %v", err)
		}
		if got := r.Stats.GetLinux().GetCpu().GetUsageCoreNanoSeconds().GetValue(); got < s.Cpu.GetUsageCoreNanoSeconds().GetValue() {
			t.Errorf("PodSandboxStats cpu = %d ns, want at least its container's %d (the parent's cpu.stat)", got, s.Cpu.GetUsageCoreNanoSeconds().GetValue())
		}
	})

	t.Run("leftover", func(t *testing.T) {
		// A container whose runtime lost it (runc delete behind crispd's
		// back), and whose cgroup came back as a runtime may leave it.
		c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: containerConfig("gone", image, "sleep", "600")})
		if err != nil {
			t.Fatalf("CreateContainer(gone) = %v", err)
		}
		gone := c.ContainerId
		if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: gone}); err != nil {
			t.Fatalf("StartContainer(gone) = %v", err)
		}
		if out, err := runc("delete", "--force", gone); err != nil {
			t.Fatalf("runc delete --force %s: %v: %s", gone, err, out)
		}
		// And the cgroup a monitor given a cgroup parent would have had
		// (oci.MonitorCgroup).
		goneCg, monCg := parent+"/crisp-"+gone, parent+"/crisp-monitor-"+gone
		for _, cg := range []string{goneCg, monCg} {
			if err := os.Mkdir(filepath.Join(tree, cg), 0o755); err != nil {
				t.Fatalf("make the left-over cgroup %s: %v", cg, err)
			}
		}
		time.Sleep(1100 * time.Millisecond) // the reconciler's grace
		rep := reconcileJSON(t, d)
		cleaned := map[string]bool{}
		for _, a := range rep.Actions {
			if a.Kind == "clean" && a.Object == "cgroup" {
				if a.Error != "" {
					t.Errorf("clean cgroup %s: %s", a.Name, a.Error)
				}
				cleaned[a.Name] = a.Id == gone
			}
		}
		for _, cg := range []string{goneCg, monCg} {
			if !cleaned[cg] {
				t.Errorf("the pass did not clean cgroup %s of %s; actions:\n%s", cg, gone, actionList(rep))
			}
			if _, err := os.Stat(filepath.Join(tree, cg)); !os.IsNotExist(err) {
				t.Errorf("cgroup %s after the pass: %v, want it gone", cg, err)
			}
		}
		if len(cleaned) != 2 {
			t.Errorf("the pass cleaned cgroups %v, want only gone's two", cleaned)
		}
		if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: gone}); err != nil {
			t.Errorf("RemoveContainer(gone) = %v", err)
		}
	})

	t.Run("systemd-parent", func(t *testing.T) {
		// A systemd slice is refused, naming the missing driver.
		pc := podConfig("cg2-systemd")
		pc.Linux.CgroupParent = "kubepods-besteffort.slice"
		_, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "crisp has no systemd cgroup driver") {
			t.Errorf("RunPodSandbox(cgroup_parent kubepods-besteffort.slice) = %v, want InvalidArgument naming the systemd driver", err)
		}
		t.Logf("systemd cgroup parent: %v", err)
	})

	t.Run("no-leftovers", func(t *testing.T) {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
			t.Fatalf("StopPodSandbox() = %v", err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
			t.Fatalf("RemovePodSandbox() = %v", err)
		}
		if left := subCgroups(t, tree, parent); len(left) != 0 {
			t.Errorf("cgroups left under %s: %v", parent, left)
		}
		if out, err := runc("list", "-q"); err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("runc list under %s = %q, %v; want nothing", runcRoot, out, err)
		}
		if ms := nsMountsUnder(t, pid, d.Dir, d.RunDir); len(ms) != 0 {
			t.Errorf("mounts left in crispd's namespace: %v", ms)
		}
		for _, what := range []string{"conmon.*" + d.RunDir, "pause --isolate " + d.RunDir} {
			if out, err := exec.Command("pgrep", "-f", "--", what).Output(); err == nil {
				t.Errorf("processes matching %q still run: %s", what, strings.Fields(string(out)))
			}
		}
		if after := reconcileJSON(t, d); len(after.Actions) != 0 {
			t.Errorf("a pass after the cleanup took %d actions:\n%s", len(after.Actions), actionList(after))
		}
	})
}

// cleanupCgroup2 removes the test's pods through the CRI, then its cgroups
// in the namespace's tree, deepest first; what is left is an error.
func cleanupCgroup2(t *testing.T, d *harness.Daemon, tree, top, parent string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt := d.Runtime()
	if pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
		for _, p := range pods.Items {
			rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id})
			rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id})
		}
	}
	dirs := append(subCgroups(t, tree, parent), parent, top)
	for _, cg := range dirs {
		dir := filepath.Join(tree, cg)
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := unix.Rmdir(dir)
			if err == nil || os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("cleanup: remove cgroup %s: %v", dir, err)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// cgroupProcs is the pids in the cgroup2 cgroup at cg; none if it is gone.
func cgroupProcs(t *testing.T, tree, cg string) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tree, cg, "cgroup.procs"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("read %s/cgroup.procs: %v", cg, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		p, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("%s/cgroup.procs: %q", cg, b)
		}
		pids = append(pids, p)
	}
	return pids
}

// cgroup2Of is pid's cgroup2 path, its /proc/<pid>/cgroup "0::" line.
func cgroup2Of(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	return ""
}

func comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

func cmdline(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// cpuStatUsage is usage_usec of the cpu.stat in dir.
func cpuStatUsage(t *testing.T, dir string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("%s/cpu.stat: %q", dir, line)
			}
			return n
		}
	}
	t.Fatalf("%s/cpu.stat has no usage_usec: %q", dir, b)
	return 0
}

// subCgroups lists the cgroups below cg, deepest first.
func subCgroups(t *testing.T, tree, cg string) []string {
	t.Helper()
	var out []string
	root := filepath.Join(tree, cg)
	filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.IsDir() && p != root {
			out = append([]string{cg + strings.TrimPrefix(p, root)}, out...)
		}
		return nil
	})
	return out
}

// nsMountsUnder lists the mounts in pid's mount namespace under dirs,
// but the image store's own, which stays while crispd runs.
func nsMountsUnder(t *testing.T, pid int, dirs ...string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || strings.HasSuffix(f[4], "/storage/overlay") {
			continue
		}
		for _, d := range dirs {
			if strings.HasPrefix(f[4], d+"/") {
				out = append(out, f[4])
			}
		}
	}
	return out
}
