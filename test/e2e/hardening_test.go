package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
)

// TestCgroupNamespace: an unprivileged container, on runc and on gVisor,
// has a cgroup namespace of its own (it sees its cgroup as the root); a
// privileged one keeps the host's.
func TestCgroupNamespace(t *testing.T) {
	harness.RequireRoot(t)
	harness.RequireTool(t, "runsc")
	d := harness.Start(t)
	image := withBusybox(t, d)
	hostNS, err := os.Readlink("/proc/self/ns/cgroup")
	if err != nil {
		t.Fatalf("this kernel has no cgroup namespaces: %v", err)
	}

	_, runcID := runPodWithContainer(t, d, image, podConfig("cgns-runc"), "runc")
	if got := execOut(t, d, runcID, "busybox", "readlink", "/proc/self/ns/cgroup"); strings.TrimSpace(got) == hostNS {
		t.Errorf("runc container's cgroup namespace = the host's %s", hostNS)
	}
	// In its own namespace a container's cgroup is "/" on every line.
	for _, line := range strings.Split(strings.TrimSpace(execOut(t, d, runcID, "cat", "/proc/self/cgroup")), "\n") {
		if !strings.HasSuffix(line, ":/") {
			t.Errorf("runc container sees cgroup line %q, want its own cgroup as /", line)
		}
	}
	if spec := bundleSpec(t, d, runcID); !hasNamespace(spec, specs.CgroupNamespace) {
		t.Errorf("runc container's spec has no cgroup namespace: %+v", spec.Linux.Namespaces)
	}

	_, gvisorID := runPodWithContainer(t, d, image, podConfig("cgns-runsc"), "runsc")
	if spec := bundleSpec(t, d, gvisorID); !hasNamespace(spec, specs.CgroupNamespace) {
		t.Errorf("gVisor container's spec has no cgroup namespace: %+v", spec.Linux.Namespaces)
	}
	if got := execOut(t, d, gvisorID, "cat", "/proc/self/cgroup"); strings.Contains(got, "crisp-"+gvisorID) {
		t.Errorf("gVisor container sees the host's cgroup path: %q", got)
	}

	priv := podConfig("cgns-priv")
	priv.LogDirectory = filepath.Join(d.Dir, "logs", "priv")
	priv.Linux.SecurityContext.Privileged = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt := d.Runtime()
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: priv})
	if err != nil {
		t.Fatal(err)
	}
	cc := containerConfig("main", image, "sleep", "600")
	cc.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}}
	c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	if got := execOut(t, d, c.ContainerId, "busybox", "readlink", "/proc/self/ns/cgroup"); strings.TrimSpace(got) != hostNS {
		t.Errorf("privileged container's cgroup namespace = %s, want the host's %s", got, hostNS)
	}
}

// TestAnnotationPassthrough: CRI annotations reach a container's OCI spec
// only when the handler's pod_annotations or container_annotations allow
// them; a tenant's dev.gvisor.* key never does by default.
func TestAnnotationPassthrough(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t, harness.WithTOML(`[runtimes.runc]
pod_annotations = ["pod.example.com/*"]
container_annotations = ["io.example/keep"]`))
	image := withBusybox(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pc := podConfig("annotations")
	pc.LogDirectory = filepath.Join(d.Dir, "logs")
	pc.Annotations = map[string]string{"pod.example.com/team": "a", "dev.gvisor.spec.mount.x.share": "pod", "other": "x"}
	pod, err := d.Runtime().RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
	if err != nil {
		t.Fatal(err)
	}
	cc := containerConfig("main", image, "sleep", "600")
	cc.Annotations = map[string]string{"io.example/keep": "yes", "io.example/drop": "no", "dev.gvisor.internal.x": "y"}
	c, err := d.Runtime().CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cc})
	if err != nil {
		t.Fatal(err)
	}
	got := bundleSpec(t, d, c.ContainerId).Annotations
	for k, want := range map[string]string{"pod.example.com/team": "a", "io.example/keep": "yes"} {
		if got[k] != want {
			t.Errorf("annotation %s = %q in the spec, want %q", k, got[k], want)
		}
	}
	for _, k := range []string{"dev.gvisor.spec.mount.x.share", "dev.gvisor.internal.x", "other", "io.example/drop"} {
		if v, ok := got[k]; ok {
			t.Errorf("annotation %s = %q reached the spec", k, v)
		}
	}
	// The pod still reports all its annotations to kubelet.
	st, err := d.Runtime().ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.ContainerId})
	if err != nil || st.Status.Annotations["io.example/drop"] != "no" {
		t.Errorf("ContainerStatus annotations = %v, %v; want all of them", st.GetStatus().GetAnnotations(), err)
	}
}

// TestSIGHUPReloadsLogLevel: SIGHUP never ends crispd; it reloads the
// config file and applies the new log level, and a broken file is logged
// and ignored.
func TestSIGHUPReloadsLogLevel(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	pid := d.PID()
	cfg, err := os.ReadFile(d.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	version := func() {
		t.Helper()
		if _, err := d.Runtime().Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
			t.Fatalf("crispd does not answer after SIGHUP: %v", err)
		}
	}
	debugLines := func() int { return strings.Count(d.Log.String(), `"rpc":"/runtime.v1.RuntimeService/Version"`) }

	version()
	if debugLines() == 0 {
		t.Fatal("at debug level, Version calls are not logged")
	}
	os.WriteFile(d.Config, []byte(strings.Replace(string(cfg), `log_level = "debug"`, `log_level = "warn"`, 1)), 0o644)
	syscall.Kill(pid, syscall.SIGHUP)
	waitFor(t, "the reload to be logged", func() bool { return strings.Contains(d.Log.String(), "SIGHUP: configuration reloaded") })
	before := debugLines()
	version()
	version()
	if n := debugLines(); n != before {
		t.Errorf("at warn level after SIGHUP, %d more Version calls were logged", n-before)
	}

	os.WriteFile(d.Config, []byte("this is = not [toml"), 0o644)
	syscall.Kill(pid, syscall.SIGHUP)
	waitFor(t, "the broken config to be reported", func() bool { return strings.Contains(d.Log.String(), "SIGHUP: configuration not reloaded") })
	version()
	if d.PID() != pid {
		t.Errorf("crispd was restarted (pid %d, was %d)", d.PID(), pid)
	}
	os.WriteFile(d.Config, cfg, 0o644)
}

func bundleSpec(t *testing.T, d *harness.Daemon, id string) specs.Spec {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.RunDir, "c", id, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func hasNamespace(s specs.Spec, typ specs.LinuxNamespaceType) bool {
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == typ {
			return true
		}
	}
	return false
}

// TestExecSyncOutputIsCapped: stdout and stderr together are capped just
// under the 16 MiB message limit; the rest is dropped and the exit code is
// kept.
func TestExecSyncOutputIsCapped(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	image := withBusybox(t, d)
	_, id := runPodWithContainer(t, d, image, podConfig("exec-cap"), "runc")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := d.Runtime().ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Timeout: 30,
		Cmd: []string{"sh", "-c", "busybox head -c 12582912 /dev/zero; busybox head -c 12582912 /dev/zero >&2; exit 3"}})
	if err != nil {
		t.Fatalf("ExecSync(24 MiB of output) = %v", err)
	}
	const maxOutput = 16<<20 - 4<<10 // oci.MaxExecOutput
	if got := len(r.Stdout) + len(r.Stderr); got != maxOutput || r.ExitCode != 3 {
		t.Errorf("ExecSync kept %d+%d bytes, exit %d; want %d in all and exit 3", len(r.Stdout), len(r.Stderr), r.ExitCode, maxOutput)
	}
}
