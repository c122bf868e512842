package e2e

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
	// ContainerStatus reports the resources in force, as kubelet's in-place
	// resize compares them: the update merged in, no hugepage limits (this
	// host has no hugetlb controller, so none was applied).
	st, err = rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: created.ContainerId})
	if err != nil {
		t.Fatal(err)
	}
	if r := st.Status.GetResources().GetLinux(); r.GetMemoryLimitInBytes() != 96<<20 || r.GetCpuShares() != 102 ||
		r.GetCpuQuota() != 50000 || len(r.GetHugepageLimits()) != 0 {
		t.Errorf("ContainerStatus().resources = %v; want 96 MiB, shares 102, quota 50000, no hugepage limits", r)
	}
	if st.Status.StopSignal != runtimeapi.Signal_SIGNAL_SIGTERM {
		t.Errorf("ContainerStatus().stop_signal = %v, want SIGTERM (busybox sets none)", st.Status.StopSignal)
	}
	if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatalf("StopPodSandbox() = %v", err)
	}
	if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatalf("RemovePodSandbox() = %v", err)
	}
}

// Status advertises what each handler really does: runc (≥ 1.1, on a
// kernel with mount_setattr) recursive read-only mounts, Debian's runsc
// not, so neither the "" handler (which trust may route to either); and
// the supplemental groups policy. A recursive read-only mount on runc is
// read-only all the way down, where a plain read-only one is not; runsc
// refuses one. ContainerStatus reports the process's real ids.
func TestKubeletFeatures(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	image := withBusybox(t, d)
	rt := d.Runtime()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	st, err := rt.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	rro := map[string]bool{}
	for _, h := range st.RuntimeHandlers {
		rro[h.Name] = h.GetFeatures().GetRecursiveReadOnlyMounts()
	}
	if want := map[string]bool{"": false, "runc": true, "runsc": false}; !maps.Equal(rro, want) {
		t.Errorf("recursive read-only mounts by handler = %v, want %v", rro, want)
	}
	if !st.GetFeatures().GetSupplementalGroupsPolicy() {
		t.Errorf("features = %v, want supplemental_groups_policy", st.GetFeatures())
	}

	// A host dir with a tmpfs mounted beneath it.
	host := t.TempDir()
	sub := filepath.Join(host, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })

	pc := podConfig("features")
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
	if err != nil {
		t.Fatalf("RunPodSandbox() = %v", err)
	}
	cc := containerConfig("main", image, "sleep", "600")
	cc.LogPath = ""
	cc.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/rro", HostPath: host, Readonly: true, RecursiveReadOnly: true},
		{ContainerPath: "/ro", HostPath: host, Readonly: true},
	}
	cc.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
		RunAsUser: &runtimeapi.Int64Value{Value: 1000}, RunAsGroup: &runtimeapi.Int64Value{Value: 2000},
		SupplementalGroups: []int64{3000}, SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict,
	}}
	created, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cc, SandboxConfig: pc})
	if err != nil {
		t.Fatalf("CreateContainer(recursive read-only mount) = %v", err)
	}
	id := created.ContainerId
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer() = %v", err)
	}
	// The mount flags say it: uid 1000 could not write to the tmpfs (0755)
	// anyway.
	ex, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Timeout: 10,
		Cmd: []string{"sh", "-c", "grep -E ' /(rro|ro)/sub ' /proc/self/mountinfo; id -u; id -G"}})
	if err != nil {
		t.Fatalf("ExecSync() = %v", err)
	}
	out := string(ex.Stdout)
	opts := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 5 {
			opts[f[4]] = f[5]
		}
	}
	if !strings.HasPrefix(opts["/rro/sub"], "ro") {
		t.Errorf("/rro/sub mount options = %q, want ro (recursive read-only)\n%s", opts["/rro/sub"], out)
	}
	if !strings.HasPrefix(opts["/ro/sub"], "rw") {
		t.Errorf("/ro/sub mount options = %q, want rw (a plain read-only bind leaves submounts alone)\n%s", opts["/ro/sub"], out)
	}
	if !strings.Contains(out, "1000\n2000 3000\n") {
		t.Errorf("ids in the container = %q, want uid 1000, groups 2000 3000", out)
	}
	cs, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	if u := cs.Status.GetUser().GetLinux(); u.GetUid() != 1000 || u.GetGid() != 2000 || !slices.Equal(u.GetSupplementalGroups(), []int64{2000, 3000}) {
		t.Errorf("ContainerStatus().user = %v, want uid 1000 gid 2000 groups [2000 3000]", cs.Status.GetUser())
	}

	// runsc cannot: refused, nothing made.
	gpc := podConfig("features-gvisor")
	gpod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: gpc, RuntimeHandler: "runsc"})
	if err != nil {
		t.Fatalf("RunPodSandbox(runsc) = %v", err)
	}
	gc := containerConfig("main", image, "sleep", "600")
	gc.LogPath = ""
	gc.Mounts = cc.Mounts[:1]
	_, err = rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: gpod.PodSandboxId, Config: gc, SandboxConfig: gpc})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("CreateContainer(recursive read-only on runsc) = %v, want Unimplemented", err)
	}
	list, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: gpod.PodSandboxId}})
	if err != nil || len(list.Containers) != 0 {
		t.Errorf("containers of the runsc pod = %v, %v; want none", list.GetContainers(), err)
	}
	for _, p := range []string{pod.PodSandboxId, gpod.PodSandboxId} {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p}); err != nil {
			t.Errorf("StopPodSandbox() = %v", err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p}); err != nil {
			t.Errorf("RemovePodSandbox() = %v", err)
		}
	}
}
