package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
	"github.com/crisp-cri/crisp/test/registry"
)

// withBusybox starts a registry holding busybox, pulls it into d and
// returns the reference.
func withBusybox(t *testing.T, d *harness.Daemon) string {
	t.Helper()
	reg := registry.Start(t)
	reg.Push(t, "crisp-test/busybox:1.0", busybox(t))
	ref := reg.Ref("crisp-test/busybox:1.0")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.Images().PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return ref
}

func containerConfig(name, image string, cmd ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: image},
		Command:  cmd,
		LogPath:  name + ".log",
		Labels:   map[string]string{"container": name},
	}
}

func TestContainerLifecycleRunc(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	image := withBusybox(t, d)
	rt := d.Runtime()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	pc := podConfig("app")
	pc.LogDirectory = filepath.Join(d.Dir, "logs")
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
	if err != nil {
		t.Fatalf("RunPodSandbox() = %v", err)
	}
	cc := containerConfig("main", image, "sh", "-c", "echo hello from $(hostname); exec sleep 600")
	created, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cc, SandboxConfig: pc})
	if err != nil {
		t.Fatalf("CreateContainer() = %v", err)
	}
	id := created.ContainerId
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer() = %v", err)
	}
	st, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING || st.Status.StartedAt == 0 {
		t.Fatalf("ContainerStatus() = %v, %v; want running", st, err)
	}

	ex, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, Timeout: 10})
	if err != nil || string(ex.Stdout) != "out\n" || string(ex.Stderr) != "err\n" || ex.ExitCode != 3 {
		t.Errorf("ExecSync() = %q %q %d, %v; want out, err, 3", ex.GetStdout(), ex.GetStderr(), ex.GetExitCode(), err)
	}

	deadline := time.Now().Add(10 * time.Second)
	var logs []byte
	for time.Now().Before(deadline) {
		logs, _ = os.ReadFile(filepath.Join(pc.LogDirectory, "main.log"))
		if strings.Contains(string(logs), "hello from app") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(string(logs), " stdout F hello from app") {
		t.Errorf("container log = %q, want a CRI log line 'stdout F hello from app'", logs)
	}

	list, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pod.PodSandboxId[:10]}})
	if err != nil || len(list.Containers) != 1 || list.Containers[0].Id != id {
		t.Errorf("ListContainers(pod) = %v, %v", list, err)
	}

	// A container that exits on its own shows its exit code.
	quick, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: containerConfig("quick", image, "sh", "-c", "exit 7")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: quick.ContainerId}); err != nil {
		t.Fatal(err)
	}
	var qs *runtimeapi.ContainerStatus
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		r, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: quick.ContainerId})
		if err == nil && r.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			qs = r.Status
			break
		}
	}
	if qs == nil || qs.ExitCode != 7 || qs.Reason != "Error" || qs.FinishedAt == 0 {
		t.Errorf("quick container status = %v, want exited 7 (Error)", qs)
	}

	start := time.Now()
	if _, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 2}); err != nil {
		t.Fatalf("StopContainer() = %v", err)
	}
	st, _ = rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	// sleep as PID 1 ignores SIGTERM: the stop ends with SIGKILL, exit 137.
	if st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.Status.ExitCode != 137 {
		t.Errorf("after stop: %v, want exited 137", st.GetStatus())
	}
	t.Logf("stop with a 2 s grace took %v", time.Since(start))
	for _, c := range []string{id, quick.ContainerId} {
		if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c}); err != nil {
			t.Errorf("RemoveContainer(%s) = %v", c, err)
		}
	}
	if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	assertNoPodLeftovers(t, d)
}
