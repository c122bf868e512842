package cri

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/oci"
)

// A container whose monitor died before it started (crispd crashed while
// setting it up) is created again under a new monitor, so that its exit is
// recorded; one whose monitor lives, or that cannot be created again, is
// started as it is.
func TestEnsureMonitor(t *testing.T) {
	tests := []struct {
		name       string
		handler    string
		breakIt    func(n *testNode, id string)
		wantCreate int // runtime creates, the first included
	}{
		{name: "monitor alive", wantCreate: 1},
		{name: "monitor killed", breakIt: func(n *testNode, id string) { n.runc.killMonitor(id) }, wantCreate: 2},
		{name: "monitor pid files gone", breakIt: func(n *testNode, id string) {
			for _, f := range n.files.Container(id).MonitorPidFiles() {
				os.Remove(f)
			}
		}, wantCreate: 2},
		{name: "pid file names someone else", breakIt: func(n *testNode, id string) {
			os.WriteFile(n.files.Container(id).ConmonPidFile(), []byte("1"), 0o644)
		}, wantCreate: 2},
		{name: "runsc sub-container", handler: "runsc", breakIt: func(n *testNode, id string) { n.runsc.killMonitor(id) }, wantCreate: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNode(t)
			podCfg := n.podConfig("web")
			podID := n.runPod(t, podCfg, tt.handler)
			id := n.createCtr(t, podID, podCfg, ctrConfig("app"))
			rt := n.runc
			if tt.handler == "runsc" {
				rt = n.runsc
			}
			if tt.breakIt != nil {
				tt.breakIt(n, id)
			}
			if _, err := n.srv.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
				t.Fatalf("StartContainer() = %v", err)
			}
			if got := rt.creates[id]; got != tt.wantCreate {
				t.Errorf("runtime creates = %d, want %d", got, tt.wantCreate)
			}
			c := n.ctrRow(t, id)
			if c.State != db.ContainerRunning || c.PID != rt.ctrs[id].pid {
				t.Errorf("row = %s pid %d, want running with the runtime's pid %d", c.State, c.PID, rt.ctrs[id].pid)
			}
			if tt.wantCreate > 1 {
				if !oci.MonitorAlive(n.files.Container(id)) {
					t.Errorf("the container has no live monitor after its start")
				}
				if !strings.Contains(n.logs.String(), "lost its monitor") {
					t.Errorf("the re-create was not logged")
				}
			}
		})
	}
}

// A container that the runtime no longer has as created is not created
// again: Start reports what is wrong.
func TestEnsureMonitorLeavesOthersAlone(t *testing.T) {
	n := newTestNode(t)
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	id := n.createCtr(t, podID, podCfg, ctrConfig("app"))
	n.runc.killMonitor(id)
	n.runc.Delete(context.Background(), id, true)
	_, err := n.srv.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	if err == nil {
		t.Fatal("StartContainer() of a container the runtime lost = nil, want an error")
	}
	if got := n.runc.creates[id]; got != 1 {
		t.Errorf("runtime creates = %d, want no re-create", got)
	}
	if c := n.ctrRow(t, id); c.State != db.ContainerCreated {
		t.Errorf("row is %s, want still created", c.State)
	}
}

func TestStartContainer(t *testing.T) {
	n := newTestNode(t)
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	id := n.startCtr(t, podID, podCfg, ctrConfig("app"))
	c := n.ctrRow(t, id)
	if c.State != db.ContainerRunning || c.StartedAt == 0 {
		t.Errorf("row = %s started %d, want running with a start time", c.State, c.StartedAt)
	}
	// A second start is refused: kubelet never asks, and a restart is a
	// new container.
	_, err := n.srv.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	if codeOfErr(err) != codes.FailedPrecondition {
		t.Errorf("second StartContainer() = %v, want FailedPrecondition", err)
	}
	// A truncated id is resolved.
	resp, err := n.srv.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id[:12]})
	if err != nil || resp.Status.Id != id || resp.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("ContainerStatus(prefix) = %v, %v; want %s running", resp, err, id)
	}
}

// A container that exits as it starts is recorded exited, not running.
func TestStartContainerExitsAtOnce(t *testing.T) {
	n := newTestNode(t)
	n.runc.exitOnStart = 3
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	id := n.startCtr(t, podID, podCfg, ctrConfig("app"))
	c := n.ctrRow(t, id)
	if c.State != db.ContainerExited || c.ExitCode == nil || *c.ExitCode != 3 || c.Reason != db.ExitError {
		t.Errorf("row = %s code %v reason %q, want exited 3 Error", c.State, c.ExitCode, c.Reason)
	}
}

// kubelet's retry of a start that a crash cut off after the runtime had
// started the container records it running.
func TestStartContainerAlreadyStartedInRuntime(t *testing.T) {
	n := newTestNode(t)
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	id := n.createCtr(t, podID, podCfg, ctrConfig("app"))
	n.runc.Start(context.Background(), id)
	if _, err := n.srv.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer() = %v, want the runtime's running container recorded", err)
	}
	if c := n.ctrRow(t, id); c.State != db.ContainerRunning {
		t.Errorf("row is %s, want running", c.State)
	}
	n.f.failAt("rt.start", errInjected)
	id2 := n.createCtr(t, podID, podCfg, ctrConfig("other"))
	_, err := n.srv.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id2})
	if codeOfErr(err) != codes.Internal {
		t.Errorf("StartContainer() with a failing runtime = %v, want Internal", err)
	}
	if c := n.ctrRow(t, id2); c.State != db.ContainerCreated {
		t.Errorf("row is %s, want still created", c.State)
	}
}

// Stop sends the image's stop signal first; a container that was never
// started is ended by deleting it, and one whose monitor is gone is
// recorded exited by crisp itself.
func TestStopContainer(t *testing.T) {
	tests := []struct {
		name     string
		start    bool
		timeout  int64
		breakIt  func(n *testNode, id string)
		wantCode int32
		wantMsg  string
	}{
		{name: "running, stop signal", start: true, timeout: 10, wantCode: 128 + int32(syscall.SIGQUIT)},
		{name: "running, no grace", start: true, wantCode: 128 + int32(syscall.SIGKILL)},
		{name: "created", wantCode: 137},
		{name: "created, monitor gone", breakIt: func(n *testNode, id string) { n.runc.killMonitor(id) },
			wantCode: 137, wantMsg: "stopped before it was started"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNode(t)
			podCfg := n.podConfig("web")
			podID := n.runPod(t, podCfg, "")
			id := n.createCtr(t, podID, podCfg, ctrConfig("app"))
			if tt.start {
				n.srv.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
			}
			if tt.breakIt != nil {
				tt.breakIt(n, id)
			}
			_, err := n.srv.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: tt.timeout})
			if err != nil {
				t.Fatalf("StopContainer() = %v", err)
			}
			c := n.ctrRow(t, id)
			if c.State != db.ContainerExited || c.ExitCode == nil || *c.ExitCode != tt.wantCode || c.Message != tt.wantMsg {
				t.Errorf("row = %s code %v message %q, want exited %d %q", c.State, c.ExitCode, c.Message, tt.wantCode, tt.wantMsg)
			}
			if oci.MonitorAlive(n.files.Container(id)) {
				t.Errorf("the monitor still runs after the stop")
			}
		})
	}
}

// Stop and remove succeed however often they are called, and on ids that
// are not known: kubelet retries them and the CRI asks for it.
func TestStopRemoveContainerIdempotent(t *testing.T) {
	n := newTestNode(t)
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	before := n.state(t)
	id := n.startCtr(t, podID, podCfg, ctrConfig("app"))
	ctx := context.Background()
	for i := range 2 {
		if _, err := n.srv.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 5}); err != nil {
			t.Errorf("StopContainer() #%d = %v", i+1, err)
		}
	}
	if got := n.f.count("rt.kill"); got != 1 {
		t.Errorf("runtime kills = %d, want 1: a stopped container is not signalled again", got)
	}
	for i := range 2 {
		if _, err := n.srv.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("RemoveContainer() #%d = %v", i+1, err)
		}
	}
	n.assertState(t, before, "after stop, stop, remove, remove")
	unknown := strings.Repeat("e", 64)
	if _, err := n.srv.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: unknown}); err != nil {
		t.Errorf("StopContainer(unknown) = %v, want success", err)
	}
	if _, err := n.srv.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: unknown}); err != nil {
		t.Errorf("RemoveContainer(unknown) = %v, want success", err)
	}
	// A running container is killed by its remove.
	id = n.startCtr(t, podID, podCfg, ctrConfig("app2"))
	if _, err := n.srv.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Errorf("RemoveContainer(running) = %v", err)
	}
	n.assertState(t, before, "after removing a running container")
}

// A remove that fails part way is finished by the next one; meanwhile the
// container is not listed.
func TestRemoveContainerRetryFinishes(t *testing.T) {
	for _, step := range []string{"images.remove-container", "rt.delete"} {
		t.Run(step, func(t *testing.T) {
			n := newTestNode(t)
			podCfg := n.podConfig("web")
			podID := n.runPod(t, podCfg, "")
			before := n.state(t)
			id := n.startCtr(t, podID, podCfg, ctrConfig("app"))
			n.f.failAt(step, errInjected)
			ctx := context.Background()
			if _, err := n.srv.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); codeOfErr(err) != codes.Internal {
				t.Errorf("RemoveContainer() = %v, want the injected failure", err)
			}
			if c := n.ctrRow(t, id); c.State != db.ContainerRemoving {
				t.Errorf("row is %s, want removing", c.State)
			}
			if l, _ := n.srv.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); len(l.Containers) != 0 {
				t.Errorf("ListContainers() = %v, want a removing container left out", l.Containers)
			}
			n.f.failAt(step, nil)
			if _, err := n.srv.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
				t.Errorf("second RemoveContainer() = %v", err)
			}
			n.assertState(t, before, "after the second remove")
		})
	}
}

// Calls on unknown ids are NotFound, except stop and remove (success);
// an empty id is InvalidArgument.
func TestUnknownIDs(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	unknown := strings.Repeat("d", 64)
	tests := []struct {
		name string
		call func(id string) error
		want codes.Code
	}{
		{"ContainerStatus", func(id string) error {
			_, err := n.srv.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
			return err
		}, codes.NotFound},
		{"StartContainer", func(id string) error {
			_, err := n.srv.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
			return err
		}, codes.NotFound},
		{"ExecSync", func(id string) error {
			_, err := n.srv.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"ls"}})
			return err
		}, codes.NotFound},
		{"Exec", func(id string) error {
			_, err := n.srv.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"ls"}})
			return err
		}, codes.NotFound},
		{"Attach", func(id string) error {
			_, err := n.srv.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id})
			return err
		}, codes.NotFound},
		{"UpdateContainerResources", func(id string) error {
			_, err := n.srv.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id})
			return err
		}, codes.NotFound},
		{"ContainerStats", func(id string) error {
			_, err := n.srv.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
			return err
		}, codes.NotFound},
		{"ReopenContainerLog", func(id string) error {
			_, err := n.srv.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
			return err
		}, codes.NotFound},
		{"PodSandboxStatus", func(id string) error {
			_, err := n.srv.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
			return err
		}, codes.NotFound},
		{"PortForward", func(id string) error {
			_, err := n.srv.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: id})
			return err
		}, codes.NotFound},
		{"StopContainer", func(id string) error {
			_, err := n.srv.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id})
			return err
		}, codes.OK},
		{"RemoveContainer", func(id string) error {
			_, err := n.srv.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
			return err
		}, codes.OK},
		{"StopPodSandbox", func(id string) error {
			_, err := n.srv.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
			return err
		}, codes.OK},
		{"RemovePodSandbox", func(id string) error {
			_, err := n.srv.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
			return err
		}, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := codeOfErr(tt.call(unknown)); got != tt.want {
				t.Errorf("%s(unknown) = %v, want %v", tt.name, got, tt.want)
			}
			if got := codeOfErr(tt.call("")); got != codes.InvalidArgument {
				t.Errorf("%s(\"\") = %v, want InvalidArgument", tt.name, got)
			}
		})
	}
}

// The exit watcher records an exit as soon as the monitor reports it.
func TestWatchExits(t *testing.T) {
	n := newTestNode(t)
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	id := n.startCtr(t, podID, podCfg, ctrConfig("app"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- n.srv.WatchExits(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	// The container ends by itself, as if its process exited 0.
	n.f.mu.Lock()
	n.runc.exit(id, 0)
	n.f.mu.Unlock()
	waitFor(t, "the exit to be recorded", func() bool {
		c, err := n.store.Container(context.Background(), id)
		return err == nil && c.State == db.ContainerExited
	})
	resp, err := n.srv.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil || resp.Status.ExitCode != 0 || resp.Status.Reason != db.ExitCompleted || resp.Status.FinishedAt == 0 {
		t.Errorf("ContainerStatus() = %v, %v; want exited 0, Completed", resp, err)
	}
}

// An OOM-killed container is reported so.
func TestRecordExitOOM(t *testing.T) {
	n := newTestNode(t)
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	id := n.startCtr(t, podID, podCfg, ctrConfig("app"))
	os.WriteFile(n.files.Container(id).OOMFile(), nil, 0o644)
	n.f.mu.Lock()
	n.runc.exit(id, 137)
	n.f.mu.Unlock()
	if !n.srv.recordExit(context.Background(), id) {
		t.Fatal("recordExit() = false after the exit file was written")
	}
	if c := n.ctrRow(t, id); c.Reason != db.ExitOOMKilled {
		t.Errorf("reason = %q, want OOMKilled", c.Reason)
	}
	// Recording again changes nothing.
	if !n.srv.recordExit(context.Background(), id) {
		t.Error("second recordExit() = false")
	}
}
