package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
)

// eventStream is one GetContainerEvents subscriber on a connection of its
// own, as each kubelet has.
type eventStream struct {
	name   string
	stream runtimeapi.RuntimeService_GetContainerEventsClient
}

// subscribeEvents opens a stream and waits for its header, which crispd
// sends once the stream is subscribed: every later commit reaches it.
// Fixed flow-control windows (which turn off gRPC's window growth) keep
// how much a stream that is not read can absorb small and the same on
// every run.
func subscribeEvents(t *testing.T, ctx context.Context, d *harness.Daemon, name string) *eventStream {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+d.Socket(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := runtimeapi.NewRuntimeServiceClient(conn).GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents(%s) = %v", name, err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatalf("GetContainerEvents(%s) header: %v", name, err)
	}
	return &eventStream{name: name, stream: stream}
}

// next receives events until one of object id, which it returns.
func (s *eventStream) next(t *testing.T, id string) *runtimeapi.ContainerEventResponse {
	t.Helper()
	for {
		ev, err := s.stream.Recv()
		if err != nil {
			t.Fatalf("%s: Recv() waiting for an event of %.12s = %v", s.name, id, err)
		}
		if ev.ContainerId == id {
			return ev
		}
	}
}

// statusOf is container id's status in ev, nil if ev has none.
func statusOf(ev *runtimeapi.ContainerEventResponse, id string) *runtimeapi.ContainerStatus {
	for _, st := range ev.ContainersStatuses {
		if st.Id == id {
			return st
		}
	}
	return nil
}

// Two subscribers see a container's whole life, in order, each event with
// its pod's status and the container's own as the event left it.
func TestContainerEvents(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	image := withBusybox(t, d)
	rt := d.Runtime()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	streams := []*eventStream{subscribeEvents(t, ctx, d, "first"), subscribeEvents(t, ctx, d, "second")}

	pc := podConfig("events")
	pc.LogDirectory = filepath.Join(d.Dir, "logs")
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
	if err != nil {
		t.Fatalf("RunPodSandbox() = %v", err)
	}
	podID := pod.PodSandboxId
	var id string
	steps := []struct {
		name  string
		call  func() error
		event runtimeapi.ContainerEventType
		state runtimeapi.ContainerState // of the container in the event; -1: not listed
	}{
		{"CreateContainer", func() error {
			resp, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID,
				Config: containerConfig("main", image, "sleep", "600"), SandboxConfig: pc})
			id = resp.GetContainerId()
			return err
		}, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, runtimeapi.ContainerState_CONTAINER_CREATED},
		{"StartContainer", func() error {
			_, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
			return err
		}, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, runtimeapi.ContainerState_CONTAINER_RUNNING},
		{"StopContainer", func() error {
			_, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 2})
			return err
		}, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, runtimeapi.ContainerState_CONTAINER_EXITED},
		{"RemoveContainer", func() error {
			_, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
			return err
		}, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, -1},
	}
	// Each step waits for its event on both streams before the next, so
	// the statuses in an event are those the step left.
	for _, step := range steps {
		if err := step.call(); err != nil {
			t.Fatalf("%s() = %v", step.name, err)
		}
		for _, s := range streams {
			ev := s.next(t, id)
			if ev.ContainerEventType != step.event {
				t.Errorf("%s: after %s got %v, want %v", s.name, step.name, ev.ContainerEventType, step.event)
			}
			if ev.CreatedAt == 0 {
				t.Errorf("%s: %v has no time", s.name, ev.ContainerEventType)
			}
			ps := ev.GetPodSandboxStatus()
			if ps.GetId() != podID || ps.GetMetadata().GetUid() != "uid-events" || ps.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY ||
				ps.GetNetwork().GetIp() == "" {
				t.Errorf("%s: %v has pod status %v; want pod %.12s, uid-events, ready, with its IP", s.name, ev.ContainerEventType, ps, podID)
			}
			st := statusOf(ev, id)
			switch {
			case step.state < 0 && st != nil:
				t.Errorf("%s: %v still lists the container: %v", s.name, ev.ContainerEventType, st)
			case step.state >= 0 && st.GetState() != step.state:
				t.Errorf("%s: %v lists the container as %v, want %v", s.name, ev.ContainerEventType, st.GetState(), step.state)
			}
		}
	}

	// Stopping the pod is a stopped event with the pod's id.
	if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox() = %v", err)
	}
	for _, s := range streams {
		ev := s.next(t, podID)
		if ev.ContainerEventType != runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT ||
			ev.GetPodSandboxStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("%s: pod event %v, pod %v; want stopped, not ready", s.name, ev.ContainerEventType, ev.GetPodSandboxStatus().GetState())
		}
	}

	if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox() = %v", err)
	}
	// crispd's shutdown ends the streams, telling clients to reconnect.
	if err := d.Stop(); err != nil {
		t.Fatalf("stop crispd: %v", err)
	}
	for _, s := range streams {
		for {
			_, err := s.stream.Recv()
			if err == nil {
				continue
			}
			if status.Code(err) != codes.Unavailable {
				t.Errorf("%s: Recv() at shutdown = %v, want Unavailable", s.name, err)
			}
			break
		}
	}
}

// A subscriber that never reads is ended with Aborted once it is
// events_buffer events behind, having lost none before that; the one that
// reads gets every event.
func TestContainerEventsSlowSubscriber(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t, harness.WithTOML("events_buffer = 4"))
	image := withBusybox(t, d)
	rt := d.Runtime()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	slow := subscribeEvents(t, ctx, d, "slow")
	fast := subscribeEvents(t, ctx, d, "fast")
	ids := func(ev *runtimeapi.ContainerEventResponse) string {
		return fmt.Sprintf("%.12s:%s", ev.ContainerId, ev.ContainerEventType)
	}
	fastEvents := make(chan *runtimeapi.ContainerEventResponse, 1000)
	fastErr := make(chan error, 1)
	go func() {
		for {
			ev, err := fast.stream.Recv()
			if err != nil {
				fastErr <- err
				return
			}
			fastEvents <- ev
		}
	}()

	// Every event carries the statuses of all of the pod's containers, so
	// with big annotations a few events fill what gRPC holds for the slow
	// stream (64 KiB of window, 64 KiB of write quota); then its buffer.
	pc := podConfig("slow-reader")
	pc.LogDirectory = filepath.Join(d.Dir, "logs")
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
	if err != nil {
		t.Fatalf("RunPodSandbox() = %v", err)
	}
	var want []string
	for i := range 12 {
		cc := containerConfig(fmt.Sprintf("c%d", i), image, "sleep", "600")
		cc.Annotations = map[string]string{"e2e.crisp/filler": strings.Repeat("x", 16<<10)}
		resp, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cc, SandboxConfig: pc})
		if err != nil {
			t.Fatalf("CreateContainer(c%d) = %v", i, err)
		}
		want = append(want, fmt.Sprintf("%.12s:%s", resp.ContainerId, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT))
		if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
			t.Fatalf("StartContainer(c%d) = %v", i, err)
		}
		want = append(want, fmt.Sprintf("%.12s:%s", resp.ContainerId, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT))
	}
	if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatalf("StopPodSandbox() = %v", err)
	}
	// The fast subscriber gets everything, up to the pod's own stop: the
	// containers' starts, their exits (in some order), then the pod.
	var got []string
	for {
		var ev *runtimeapi.ContainerEventResponse
		select {
		case ev = <-fastEvents:
		case err := <-fastErr:
			t.Fatalf("fast: stream ended after %v: %v", got, err)
		}
		got = append(got, ids(ev))
		if ev.ContainerId == pod.PodSandboxId {
			break
		}
	}
	if len(got) != len(want)+13 || strings.Join(got[:len(want)], " ") != strings.Join(want, " ") {
		t.Errorf("fast: got %d events %v;\nwant %v, then 12 stops and the pod's", len(got), got, want)
	}

	// The slow one now reads what gRPC held for it, in order and without
	// a gap, then the error that says it fell behind.
	var slowGot []string
	for {
		ev, err := slow.stream.Recv()
		if err != nil {
			if status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), "fell behind by 5 events; relist") {
				t.Errorf("slow: stream ended with %v, want Aborted: fell behind by 5 events; relist", err)
			}
			break
		}
		slowGot = append(slowGot, ids(ev))
	}
	if len(slowGot) == 0 || len(slowGot) >= len(got) || strings.Join(slowGot, " ") != strings.Join(got[:len(slowGot)], " ") {
		t.Errorf("slow: got %v;\nwant a proper prefix of the fast subscriber's %v", slowGot, got)
	}
	t.Logf("the slow subscriber got %d of %d events before its stream ended", len(slowGot), len(got))
}
