package e2e

import (
	"context"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
)

// kubeletResources are container resources as kubelet fills them in: a
// hugepage limit for every page size the node has (0 when the pod asks
// for none), CPU shares, quota and period, a memory limit and an OOM
// score. critest and crictl send none of the hugepage limits.
func kubeletResources() *runtimeapi.LinuxContainerResources {
	return &runtimeapi.LinuxContainerResources{
		CpuShares: 102, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20, OomScoreAdj: 1000,
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}, {PageSize: "1GB", Limit: 0}},
	}
}

// A container with kubelet's resources runs on this host as it comes,
// whether or not it has a hugetlb cgroup controller (this one has none),
// and takes the same resources in an update.
func TestKubeletResourcesRunOnThisHost(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	image := withBusybox(t, d)
	rt := d.Runtime()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	pc := podConfig("kubelet-fields")
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
	if err != nil {
		t.Fatalf("RunPodSandbox() = %v", err)
	}
	cc := containerConfig("main", image, "sleep", "600")
	cc.LogPath = ""
	cc.Linux = &runtimeapi.LinuxContainerConfig{Resources: kubeletResources()}
	created, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cc, SandboxConfig: pc})
	if err != nil {
		t.Fatalf("CreateContainer(kubelet's resources) = %v", err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: created.ContainerId}); err != nil {
		t.Fatalf("StartContainer(kubelet's resources) = %v", err)
	}
	st, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: created.ContainerId})
	if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("ContainerStatus() = %v, %v; want running", st, err)
	}
	upd := kubeletResources()
	upd.MemoryLimitInBytes = 96 << 20
	if _, err := rt.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: created.ContainerId, Linux: upd}); err != nil {
		t.Errorf("UpdateContainerResources(kubelet's resources) = %v", err)
	}
	if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatalf("StopPodSandbox() = %v", err)
	}
	if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatalf("RemovePodSandbox() = %v", err)
	}
}
