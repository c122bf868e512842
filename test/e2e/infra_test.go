package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// A pod sharing its PID namespace gets crisp's built-in infra as PID 1.
func TestSharedPIDPodHasInfra(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	image := withBusybox(t, d)
	pc := podConfig("shared")
	pc.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	_, ctrID := runPodWithContainer(t, d, image, pc, "")
	comm := execOut(t, d, ctrID, "cat", "/proc/1/cmdline")
	if !strings.Contains(comm, "pause") {
		t.Errorf("PID 1 of the shared namespace runs %q, want crispd pause", comm)
	}
}
