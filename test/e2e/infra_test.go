package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
)

// runPodWithContainer runs a pod (handler "" = by trust), starts one sleeping
// container in it and returns both ids.
func runPodWithContainer(t *testing.T, d *harness.Daemon, image string, pc *runtimeapi.PodSandboxConfig, handler string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt := d.Runtime()
	if pc.LogDirectory == "" {
		pc.LogDirectory = filepath.Join(d.Dir, "logs", pc.Metadata.Name)
	}
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc, RuntimeHandler: handler})
	if err != nil {
		t.Fatalf("RunPodSandbox(%s) = %v", pc.Metadata.Name, err)
	}
	c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId,
		Config: containerConfig("main", image, "sleep", "600")})
	if err != nil {
		t.Fatalf("CreateContainer() = %v", err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatalf("StartContainer() = %v", err)
	}
	return pod.PodSandboxId, c.ContainerId
}

func execOut(t *testing.T, d *harness.Daemon, id string, cmd ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := d.Runtime().ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 30})
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("exec %v = %v (exit %d, stderr %q)", cmd, err, r.GetExitCode(), r.GetStderr())
	}
	return string(r.Stdout)
}

// A pod annotated untrusted runs under runsc, as runsc itself reports, and
// its container runs inside the pod's gVisor sandbox.
func TestUntrustedPodRunsOnRunsc(t *testing.T) {
	harness.RequireRoot(t)
	harness.RequireTool(t, "runsc")
	d := harness.Start(t)
	image := withBusybox(t, d)
	pc := podConfig("sandboxed")
	pc.Annotations = map[string]string{"io.kubernetes.cri.untrusted-workload": "true"}
	podID, ctrID := runPodWithContainer(t, d, image, pc, "")

	if !listed(t, "runsc", filepath.Join(d.RunDir, "runsc"), podID) || !listed(t, "runsc", filepath.Join(d.RunDir, "runsc"), ctrID) {
		t.Errorf("runsc list lacks the pod's sandbox %s or its container %s", podID, ctrID)
	}
	if listed(t, "runc", filepath.Join(d.RunDir, "runc"), ctrID) {
		t.Errorf("runc lists the untrusted container")
	}
	// gVisor's kernel answers inside the container, not the host's.
	host, _ := os.ReadFile("/proc/version")
	if v := execOut(t, d, ctrID, "cat", "/proc/version"); v == string(host) || !strings.Contains(v, "gvisor") {
		t.Errorf("/proc/version inside = %q, want gVisor's, not the host's", v)
	}
	out, _, _ := d.Crispctl("sql", "--csv", "SELECT handler, trust, trust_reason FROM pods")
	if !strings.Contains(out, "runsc,untrusted,annotation") {
		t.Errorf("pods row = %q, want runsc,untrusted,annotation", out)
	}
	// It stops like any container: SIGTERM (143), or SIGKILL after the grace (137).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := d.Runtime().StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctrID, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	st, err := d.Runtime().ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctrID})
	if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED || (st.Status.ExitCode != 143 && st.Status.ExitCode != 137) {
		t.Errorf("after stop: %v, %v; want exited 143 or 137", st.GetStatus(), err)
	}
}

// A pod sharing its PID namespace gets crisp's built-in infra as PID 1.
func TestSharedPIDPodHasInfra(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	image := withBusybox(t, d)
	pc := podConfig("shared")
	pc.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	podID, ctrID := runPodWithContainer(t, d, image, pc, "")
	comm := execOut(t, d, ctrID, "cat", "/proc/1/cmdline")
	if !strings.Contains(comm, "pause") {
		t.Errorf("PID 1 of the shared namespace runs %q, want crispd pause", comm)
	}
	// The infra is shut off from the host: it runs as nobody, and its root
	// (an empty tmpfs) is not the host's, nor is it reachable from the pod.
	if st := execOut(t, d, ctrID, "cat", "/proc/1/status"); !strings.Contains(st, "Uid:\t65534\t65534\t65534\t65534") {
		t.Errorf("infra status = %q, want uid 65534 (nobody)", st)
	}
	if r, err := d.Runtime().ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: ctrID, Cmd: []string{"ls", "/proc/1/root/etc"}, Timeout: 30}); err != nil || r.ExitCode == 0 {
		t.Errorf("ls /proc/1/root/etc from the pod = %v, exit %d, %q: want refused", err, r.GetExitCode(), r.GetStdout())
	}
	infraPID := pgrep(t, "pause --isolate "+filepath.Join(d.RunDir, "pods", podID))
	if infraPID == "" {
		t.Fatal("no crispd pause process for the pod on the host")
	}
	if entries, err := os.ReadDir("/proc/" + infraPID + "/root/"); err != nil || len(entries) != 0 {
		t.Errorf("infra root holds %d entries (%v), want an empty tmpfs", len(entries), err)
	}

	// The infra outlives crispd: after kill -9 and a restart, a second
	// container joins the same PID namespace and sees the first one.
	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	d.Restart()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt := d.Runtime()
	c2, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID,
		Config: containerConfig("second", image, "sleep", "600")})
	if err != nil {
		t.Fatalf("CreateContainer after restart = %v", err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c2.ContainerId}); err != nil {
		t.Fatalf("StartContainer after restart = %v", err)
	}
	if ps := execOut(t, d, c2.ContainerId, "ps"); !strings.Contains(ps, "sleep 600") || !strings.Contains(ps, "pause") {
		t.Errorf("ps in the second container = %q, want the infra and the first container's sleep", ps)
	}
	// Stopping the pod ends the infra, and with it the pod's PID namespace.
	if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if st := procState(infraPID); st != "" && st != "Z" {
		t.Errorf("infra process %s is in state %s after StopPodSandbox, want gone", infraPID, st)
	}
}

// procState is the state letter of a process (R, S, Z...), "" once it is
// gone. A dead process may stay a zombie until its new parent reaps it.
func procState(pid string) string {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return f[0]
}

// pgrep returns the pid of the one process whose command line holds s, or "".
func pgrep(t *testing.T, s string) string {
	t.Helper()
	out, _ := exec.Command("pgrep", "-f", "--", s).Output()
	pids := strings.Fields(string(out))
	if len(pids) > 1 {
		t.Fatalf("pgrep -f %q = %v, want one process", s, pids)
	}
	if len(pids) == 0 {
		return ""
	}
	return pids[0]
}

// A pod without an infra process (kubelet's default: no shared PID
// namespace) gets its sysctls too, in its own namespaces only.
func TestPodSysctlsWithoutInfra(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	image := withBusybox(t, d)
	pc := podConfig("sysctls")
	pc.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "1000", "kernel/shm_rmid_forced": "1"}
	_, ctrID := runPodWithContainer(t, d, image, pc, "")
	for path, want := range map[string]string{"/proc/sys/net/ipv4/ip_unprivileged_port_start": "1000", "/proc/sys/kernel/shm_rmid_forced": "1"} {
		if got := strings.TrimSpace(execOut(t, d, ctrID, "cat", path)); got != want {
			t.Errorf("%s in the pod = %q, want %q", path, got, want)
		}
	}
	// The host's values are untouched.
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); strings.TrimSpace(string(b)) == "1000" {
		t.Errorf("the host's ip_unprivileged_port_start became 1000")
	}
	// A sysctl that is not namespaced is refused, and nothing is left.
	bad := podConfig("badsysctl")
	bad.Linux.Sysctls = map[string]string{"kernel.panic": "1"}
	_, err := d.Runtime().RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: bad})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("RunPodSandbox with kernel.panic = %v, want InvalidArgument", err)
	}
	out, _, err := d.Crispctl("sql", "--csv", "SELECT (SELECT count(*) FROM sandboxes) || '/' || (SELECT count(*) FROM names WHERE kind = 'pod')")
	if err != nil || !strings.HasSuffix(out, "\n1/1\n") {
		t.Errorf("pods/pod names after the refused pod = %q (%v), want only the first pod's 1/1", out, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(d.RunDir, "netns")); len(entries) != 1 {
		t.Errorf("%d netns pins after the refused pod, want the first pod's 1", len(entries))
	}
}

// A container stopped before it was started ends exited, on runc and under
// runsc (which refuses to signal a created container), and is removed
// with nothing left running.
func TestStopCreatedContainer(t *testing.T) {
	harness.RequireRoot(t)
	harness.RequireTool(t, "runsc")
	d := harness.Start(t)
	image := withBusybox(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt := d.Runtime()
	for _, tc := range []struct{ handler, name string }{{"runc", "created-runc"}, {"runsc", "created-runsc"}} {
		pc := podConfig(tc.name)
		pc.LogDirectory = filepath.Join(d.Dir, "logs", tc.name)
		if tc.handler == "runsc" {
			pc.Annotations = map[string]string{"io.kubernetes.cri.untrusted-workload": "true"}
		}
		pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
		if err != nil {
			t.Fatalf("%s: RunPodSandbox = %v", tc.handler, err)
		}
		c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId,
			Config: containerConfig("never", image, "sleep", "600")})
		if err != nil {
			t.Fatalf("%s: CreateContainer = %v", tc.handler, err)
		}
		start := time.Now()
		if _, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c.ContainerId, Timeout: 10}); err != nil {
			t.Fatalf("%s: StopContainer(created) = %v", tc.handler, err)
		}
		st, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.ContainerId})
		if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.Status.ExitCode != 137 {
			t.Errorf("%s: status after stop = %v, %v; want exited 137", tc.handler, st.GetStatus(), err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Logf("%s: stopping a created container took %v", tc.handler, took)
		}
		if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.ContainerId}); err != nil {
			t.Errorf("%s: RemoveContainer = %v", tc.handler, err)
		}
		if listed(t, tc.handler, filepath.Join(d.RunDir, tc.handler), c.ContainerId) {
			t.Errorf("%s still lists the removed container", tc.handler)
		}
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
			t.Errorf("%s: StopPodSandbox = %v", tc.handler, err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
			t.Errorf("%s: RemovePodSandbox = %v", tc.handler, err)
		}
	}
	assertNoPodLeftovers(t, d)
	if out, err := exec.Command("pgrep", "-f", "--", d.RunDir).Output(); err == nil {
		t.Errorf("processes of this daemon left: %s", strings.Fields(string(out)))
	}
}

// A created container whose monitor died (crispd killed while conmon was
// being set up breaks conmon's sync pipe) is created again under a new
// monitor when it starts, so its exit is still recorded.
func TestStartRecreatesALostMonitor(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	image := withBusybox(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt := d.Runtime()
	pc := podConfig("lostmon")
	pc.LogDirectory = filepath.Join(d.Dir, "logs", "lostmon")
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
	if err != nil {
		t.Fatal(err)
	}
	c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId,
		Config: containerConfig("main", image, "sh", "-c", "sleep 1; exit 7")})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(d.RunDir, "c", c.ContainerId, "conmon.pid"))
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("kill", "-9", strings.TrimSpace(string(b))).Run(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatalf("StartContainer after its monitor died = %v", err)
	}
	var st *runtimeapi.ContainerStatus
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		r, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.ContainerId})
		if err != nil {
			t.Fatal(err)
		}
		if st = r.Status; st.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			break
		}
	}
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 7 {
		t.Errorf("status = %v exit %d, want exited 7 (recorded by the new monitor)", st.State, st.ExitCode)
	}
}
