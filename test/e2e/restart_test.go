package e2e

import (
	"context"
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

// Containers keep running across a crispd restart, clean (SIGTERM) or not
// (SIGKILL), and are listed with the right state after; a container that
// exits while crispd is down has its exit recorded once crispd is back.
func TestContainersSurviveRestart(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	image := withBusybox(t, d)
	pc := podConfig("survivor")
	_, keep := runPodWithContainer(t, d, image, pc, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt := d.Runtime()
	podID := listOne(t, d).PodSandboxId
	// A second container that will exit while crispd is down.
	c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID,
		Config: containerConfig("short", image, "sh", "-c", "read x < /dev/zero & sleep 2; exit 5")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}

	for _, how := range []struct {
		name string
		stop func() error
	}{{"SIGKILL", d.Kill}, {"SIGTERM", d.Stop}} {
		if err := how.stop(); err != nil {
			t.Fatalf("%s crispd: %v", how.name, err)
		}
		time.Sleep(3 * time.Second) // "short" exits meanwhile, the first time
		d.Restart()
		rt = d.Runtime()
		st, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: keep})
		if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("after %s: ContainerStatus(keep) = %v, %v; want running", how.name, st, err)
		}
		if out := execOut(t, d, keep, "echo", "alive"); out != "alive\n" {
			t.Errorf("after %s: exec = %q", how.name, out)
		}
		out, err := exec.Command("runc", "--root", filepath.Join(d.RunDir, "runc"), "state", keep).CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"status": "running"`) {
			t.Errorf("after %s: runc state = %s, %v", how.name, out, err)
		}
		var short *runtimeapi.ContainerStatus
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			r, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.ContainerId})
			if err == nil && r.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
				short = r.Status
				break
			}
		}
		if short == nil || short.ExitCode != 5 {
			t.Errorf("after %s: the container that exited while crispd was down = %v, want exited 5", how.name, short)
		}
	}
}

// A container over its memory limit is OOM-killed and says so.
func TestOOMKilled(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	image := withBusybox(t, d)
	pc := podConfig("hungry")
	pc.LogDirectory = filepath.Join(d.Dir, "logs")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt := d.Runtime()
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
	if err != nil {
		t.Fatal(err)
	}
	cc := containerConfig("eater", image, "dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1")
	cc.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 << 20}}
	c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	var st *runtimeapi.ContainerStatus
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		r, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.ContainerId})
		if err == nil && r.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			st = r.Status
			break
		}
	}
	if st == nil || st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Errorf("status = %v, want exited 137 OOMKilled", st)
	}
}

// UpdateContainerResources changes a running container's memory limit,
// as its cgroup shows.
func TestUpdateContainerResources(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	image := withBusybox(t, d)
	_, id := runPodWithContainer(t, d, image, podConfig("elastic"), "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := d.Runtime().UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id,
		Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 96 << 20, CpuShares: 512}})
	if err != nil {
		t.Fatalf("UpdateContainerResources() = %v", err)
	}
	if got := execOut(t, d, id, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"); got != "100663296\n" {
		t.Errorf("memory limit inside = %q, want 100663296", got)
	}
	_, err = d.Runtime().UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id,
		Linux: &runtimeapi.LinuxContainerResources{CpuQuota: 10}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("UpdateContainerResources(cpu_quota 10) = %v, want InvalidArgument", err)
	}
}

func listOne(t *testing.T, d *harness.Daemon) *runtimeapi.Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := d.Runtime().ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil || len(l.Containers) == 0 {
		t.Fatalf("ListContainers = %v, %v", l, err)
	}
	return l.Containers[0]
}
