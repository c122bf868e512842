package cri

import (
	"context"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListContainers filters by pod, state, labels and id prefix, and leaves
// out containers in creating or removing.
func TestListContainers(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	webCfg, dbCfg := n.podConfig("web"), n.podConfig("db")
	web, dbPod := n.runPod(t, webCfg, ""), n.runPod(t, dbCfg, "")
	running := n.startCtr(t, web, webCfg, ctrConfig("app"))
	created := n.createCtr(t, web, webCfg, ctrConfig("sidecar"))
	exited := n.startCtr(t, dbPod, dbCfg, ctrConfig("db"))
	if _, err := n.srv.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: exited}); err != nil {
		t.Fatal(err)
	}
	n.f.failAt("images.remove-container", errInjected)
	removing := n.createCtr(t, dbPod, dbCfg, ctrConfig("gone"))
	n.srv.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: removing})

	state := func(s runtimeapi.ContainerState) *runtimeapi.ContainerStateValue {
		return &runtimeapi.ContainerStateValue{State: s}
	}
	tests := []struct {
		name   string
		filter *runtimeapi.ContainerFilter
		want   []string
	}{
		{"all", nil, []string{running, created, exited}},
		{"pod", &runtimeapi.ContainerFilter{PodSandboxId: web}, []string{running, created}},
		{"pod by prefix", &runtimeapi.ContainerFilter{PodSandboxId: dbPod[:8]}, []string{exited}},
		{"unknown pod", &runtimeapi.ContainerFilter{PodSandboxId: strings.Repeat("0", 64)}, nil},
		{"running", &runtimeapi.ContainerFilter{State: state(runtimeapi.ContainerState_CONTAINER_RUNNING)}, []string{running}},
		{"created", &runtimeapi.ContainerFilter{State: state(runtimeapi.ContainerState_CONTAINER_CREATED)}, []string{created}},
		{"exited", &runtimeapi.ContainerFilter{State: state(runtimeapi.ContainerState_CONTAINER_EXITED)}, []string{exited}},
		{"unknown state", &runtimeapi.ContainerFilter{State: state(runtimeapi.ContainerState_CONTAINER_UNKNOWN)}, nil},
		{"label", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"ctr": "sidecar"}}, []string{created}},
		{"id prefix", &runtimeapi.ContainerFilter{Id: running[:10]}, []string{running}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := n.srv.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: tt.filter})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range resp.Containers {
				got = append(got, c.Id)
			}
			slices.Sort(got)
			if want := slices.Sorted(slices.Values(tt.want)); !slices.Equal(got, want) {
				t.Errorf("ListContainers() = %v, want %v", got, want)
			}
		})
	}
}

// ContainerStatus reports what the row says, the stored config's mounts
// and image annotations, and, verbose, the pid.
func TestContainerStatus(t *testing.T) {
	n := newTestNode(t)
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	cfg := ctrConfig("app")
	cfg.Image.Annotations = map[string]string{"a": "b"}
	cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: t.TempDir()}}
	id := n.startCtr(t, podID, podCfg, cfg)
	resp, err := n.srv.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	st := resp.Status
	if st.Metadata.Name != "app" || st.ImageRef != "sha256:"+testImage.ID || st.Image.Annotations["a"] != "b" ||
		len(st.Mounts) != 1 || st.LogPath == "" || st.StartedAt == 0 || st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("status = %v", st)
	}
	if !strings.Contains(resp.Info["info"], `"sandboxID":"`+podID+`"`) {
		t.Errorf("verbose info = %s, want the pod", resp.Info["info"])
	}
}

// ExecSync runs in running containers only, with the spec's process.
func TestExecSync(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	cfg := ctrConfig("app")
	cfg.WorkingDir = "/srv"
	running := n.startCtr(t, podID, podCfg, cfg)
	created := n.createCtr(t, podID, podCfg, ctrConfig("other"))
	resp, err := n.srv.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: running, Cmd: []string{"echo", "hi"}})
	if err != nil || string(resp.Stdout) != "echo hi" || string(resp.Stderr) != "/srv" || resp.ExitCode != 3 {
		t.Errorf("ExecSync() = %v, %v; want the fake's echo of args and cwd, code 3", resp, err)
	}
	if _, err := n.srv.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: created, Cmd: []string{"ls"}}); codeOfErr(err) != codes.FailedPrecondition {
		t.Errorf("ExecSync(created) = %v, want FailedPrecondition", err)
	}
	if _, err := n.srv.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: running}); codeOfErr(err) != codes.InvalidArgument {
		t.Errorf("ExecSync(no cmd) = %v, want InvalidArgument", err)
	}
	if _, err := n.srv.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: created, Cmd: []string{"ls"}}); codeOfErr(err) != codes.FailedPrecondition {
		t.Errorf("Exec(created) = %v, want FailedPrecondition", err)
	}
	// The streaming server runs the runtime with the spec's process.
	target, err := n.srv.StreamTargets().ExecTarget(ctx, running)
	if err != nil || target.RuntimePath != n.runc.h.Path || target.Process.Cwd != "/srv" || target.ContainerID != running {
		t.Errorf("ExecTarget() = %+v, %v", target, err)
	}
	attach, err := n.srv.StreamTargets().AttachTarget(ctx, running)
	if err != nil || attach.Socket != n.files.Container(running).AttachSocket() {
		t.Errorf("AttachTarget() = %+v, %v", attach, err)
	}
	fwd, err := n.srv.StreamTargets().PortForwardTarget(ctx, podID)
	if err != nil || fwd.NetNS != n.podRow(t, podID).NetNSPath {
		t.Errorf("PortForwardTarget() = %+v, %v; want the pod's netns", fwd, err)
	}
}

// Resources are updated in created and running containers, and not where
// the runtime cannot.
func TestUpdateContainerResources(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	res := &runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 64 << 20}
	update := func(id string) error {
		_, err := n.srv.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: res})
		return err
	}
	webCfg, gvCfg := n.podConfig("web"), n.podConfig("gv")
	web, gv := n.runPod(t, webCfg, ""), n.runPod(t, gvCfg, "runsc")
	running := n.startCtr(t, web, webCfg, ctrConfig("app"))
	created := n.createCtr(t, web, webCfg, ctrConfig("other"))
	exited := n.startCtr(t, web, webCfg, ctrConfig("done"))
	n.srv.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: exited})
	sandboxed := n.startCtr(t, gv, gvCfg, ctrConfig("app"))
	tests := []struct {
		name string
		id   string
		want codes.Code
	}{
		{"running", running, codes.OK},
		{"created", created, codes.OK},
		{"exited", exited, codes.FailedPrecondition},
		{"runsc", sandboxed, codes.FailedPrecondition},
	}
	for _, tt := range tests {
		if got := codeOfErr(update(tt.id)); got != tt.want {
			t.Errorf("UpdateContainerResources(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
	res.CpuShares = -1
	if got := codeOfErr(update(running)); got != codes.InvalidArgument {
		t.Errorf("UpdateContainerResources(bad shares) = %v, want InvalidArgument", got)
	}
}

// ContainerStatus reports the process as CreateContainer resolved it: the
// effective user and groups, the resources in force (updates merged in)
// and the stop signal (the config's, else the image's).
func TestContainerStatusProcess(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	cfg := ctrConfig("app")
	cfg.Linux = &runtimeapi.LinuxContainerConfig{
		SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			RunAsUser: &runtimeapi.Int64Value{Value: 1000}, RunAsGroup: &runtimeapi.Int64Value{Value: 2000},
			SupplementalGroups: []int64{3000},
		},
		Resources: &runtimeapi.LinuxContainerResources{CpuShares: 256, MemoryLimitInBytes: 32 << 20},
	}
	app := n.startCtr(t, podID, podCfg, cfg)
	quit := ctrConfig("quit")
	quit.StopSignal = runtimeapi.Signal_SIGNAL_SIGUSR1
	usr1 := n.createCtr(t, podID, podCfg, quit)

	status := func(id string) *runtimeapi.ContainerStatus {
		t.Helper()
		resp, err := n.srv.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	st := status(app)
	u := st.GetUser().GetLinux()
	if u.GetUid() != 1000 || u.GetGid() != 2000 || !slices.Equal(u.GetSupplementalGroups(), []int64{2000, 3000}) {
		t.Errorf("user = %v, want uid 1000 gid 2000 groups [2000 3000]", st.GetUser())
	}
	if r := st.GetResources().GetLinux(); r.GetCpuShares() != 256 || r.GetMemoryLimitInBytes() != 32<<20 {
		t.Errorf("resources = %v, want shares 256, memory 32 MiB", st.GetResources())
	}
	if st.StopSignal != runtimeapi.Signal_SIGNAL_SIGQUIT {
		t.Errorf("stop_signal = %v, want the image's SIGQUIT", st.StopSignal)
	}
	if got := status(usr1).StopSignal; got != runtimeapi.Signal_SIGNAL_SIGUSR1 {
		t.Errorf("stop_signal = %v, want the config's SIGUSR1", got)
	}

	_, err := n.srv.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{
		ContainerId: app, Linux: &runtimeapi.LinuxContainerResources{CpuShares: 512}})
	if err != nil {
		t.Fatal(err)
	}
	if r := status(app).GetResources().GetLinux(); r.GetCpuShares() != 512 || r.GetMemoryLimitInBytes() != 32<<20 {
		t.Errorf("resources after update = %v, want shares 512, memory still 32 MiB", r)
	}
	// A failed update changes nothing recorded.
	n.f.failAt("rt.update", errInjected)
	n.srv.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{
		ContainerId: app, Linux: &runtimeapi.LinuxContainerResources{CpuShares: 1024}})
	if r := status(app).GetResources().GetLinux(); r.GetCpuShares() != 512 {
		t.Errorf("resources after a failed update = %v, want shares 512", r)
	}
}
