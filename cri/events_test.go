package cri

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/validate"
	"github.com/crisp-cri/crisp/db"
)

func testEvent(id string) *runtimeapi.ContainerEventResponse {
	return &runtimeapi.ContainerEventResponse{ContainerId: id}
}

// collector forwards a subscription into a slice, as a stream would send
// it, and reports each event it got on got.
type collector struct {
	mu  sync.Mutex
	ids []string
	got chan string
	err chan error // forward's result
}

func collect(ctx context.Context, sub *eventSub) *collector {
	c := &collector{got: make(chan string, 100), err: make(chan error, 1)}
	go func() {
		c.err <- sub.forward(ctx, func(ev *runtimeapi.ContainerEventResponse) error {
			c.mu.Lock()
			c.ids = append(c.ids, ev.ContainerId)
			c.mu.Unlock()
			c.got <- ev.ContainerId
			return nil
		})
	}()
	return c
}

func (c *collector) next(t *testing.T) string {
	t.Helper()
	select {
	case id := <-c.got:
		return id
	case err := <-c.err:
		t.Fatalf("stream ended early: %v", err)
	}
	return ""
}

func TestEventHubFanOutInOrder(t *testing.T) {
	h := newEventHub(8, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var subs []*collector
	for range 3 {
		sub, err := h.subscribe(0)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, collect(ctx, sub))
	}
	want := []string{"a", "b", "c", "d", "e", "f"}
	for i, id := range want {
		h.publish(int64(i+1), testEvent(id))
	}
	for i, c := range subs {
		var got []string
		for range want {
			got = append(got, c.next(t))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("subscriber %d got %v, want %v", i, got, want)
		}
	}
}

func TestEventHubStartsAfterSubscription(t *testing.T) {
	h := newEventHub(8, slog.New(slog.NewTextHandler(io.Discard, nil)))
	sub, err := h.subscribe(5)
	if err != nil {
		t.Fatal(err)
	}
	if h.wants(5) || !h.wants(6) {
		t.Errorf("wants(5), wants(6) = %v, %v; want false, true", h.wants(5), h.wants(6))
	}
	if got := h.oldest(9); got != 5 {
		t.Errorf("oldest(9) = %d, want 5", got)
	}
	h.publish(4, testEvent("old"))
	h.publish(5, testEvent("old"))
	h.publish(6, testEvent("new"))
	if got := len(sub.events); got != 1 {
		t.Fatalf("subscriber after 5 holds %d events, want 1", got)
	}
	if ev := <-sub.events; ev.ContainerId != "new" {
		t.Errorf("subscriber after 5 got %q, want new", ev.ContainerId)
	}
}

// A subscriber that does not read loses no event silently: when its
// buffer is full it is ended with Aborted, while the others go on.
func TestEventHubSlowReaderEndsWithAborted(t *testing.T) {
	h := newEventHub(2, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow, err := h.subscribe(0)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := h.subscribe(0)
	if err != nil {
		t.Fatal(err)
	}
	reader := collect(ctx, fast)
	want := []string{"a", "b", "c", "d", "e"}
	for i, id := range want {
		h.publish(int64(i+1), testEvent(id))
		if got := reader.next(t); got != id {
			t.Fatalf("fast subscriber got %q, want %q", got, id)
		}
	}
	// The slow one fell behind at the third event and was dropped;
	// forward reports why.
	select {
	case <-slow.ended:
	default:
		t.Fatal("the slow subscriber was not ended when its buffer overflowed")
	}
	err = slow.forward(ctx, func(*runtimeapi.ContainerEventResponse) error {
		t.Error("an ended subscription sent an event")
		return nil
	})
	if !errors.Is(err, ErrFellBehind) || codeOfErr(err) != codes.Aborted {
		t.Fatalf("slow subscriber's forward() = %v (%s), want ErrFellBehind (Aborted)", err, codeOfErr(err))
	}
	if msg := err.Error(); !strings.Contains(msg, "fell behind by 3 events; relist") {
		t.Errorf("error %q does not say how far it fell behind and to relist", msg)
	}
	if h.wants(6) != true || len(h.subs) != 1 {
		t.Errorf("hub has %d subscriptions after dropping the slow one, want 1", len(h.subs))
	}
}

func TestEventHubUnsubscribeAndClose(t *testing.T) {
	h := newEventHub(1, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := h.subscribe(0)
	if err != nil {
		t.Fatal(err)
	}
	c := collect(ctx, sub)
	cancel()
	if err := <-c.err; !errors.Is(err, context.Canceled) {
		t.Errorf("forward() after cancel = %v, want context.Canceled", err)
	}
	h.unsubscribe(sub)
	if h.wants(1) {
		t.Error("hub still wants events after the only subscription left")
	}
	for i := range 5 {
		h.publish(int64(i+1), testEvent("x")) // nobody: never blocks
	}

	open, err := h.subscribe(0)
	if err != nil {
		t.Fatal(err)
	}
	h.close(ErrUnavailable)
	if err := open.forward(context.Background(), nil); !errors.Is(err, ErrUnavailable) {
		t.Errorf("forward() after close = %v, want ErrUnavailable", err)
	}
	if _, err := h.subscribe(0); !errors.Is(err, ErrUnavailable) {
		t.Errorf("subscribe() after close = %v, want ErrUnavailable", err)
	}
}

func TestEventHubBoundsStreams(t *testing.T) {
	h := newEventHub(1, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for range maxEventStreams {
		if _, err := h.subscribe(0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.subscribe(0); codeOfErr(err) != codes.ResourceExhausted {
		t.Errorf("subscribe() beyond %d streams = %v, want ResourceExhausted", maxEventStreams, err)
	}
}

func TestContainerEventType(t *testing.T) {
	tests := []struct {
		kind, typ string
		want      runtimeapi.ContainerEventType
		ok        bool
	}{
		{"container", "creating", 0, false},
		{"container", "created", runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, true},
		{"container", "running", runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, true},
		{"container", "exited", runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, true},
		{"container", "unknown", 0, false},
		{"container", "removing", 0, false},
		{"container", "deleted", runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, true},
		{"container", "reconcile.adopt", 0, false},
		{"pod", "creating", 0, false},
		{"pod", "ready", 0, false},
		{"pod", "notready", runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, true},
		{"pod", "removing", 0, false},
		{"pod", "deleted", 0, false},
		{"name", "deleted", 0, false},
		{"node", "reboot", 0, false},
	}
	for _, tt := range tests {
		got, ok := containerEventType(db.Event{Kind: tt.kind, Type: tt.typ})
		if got != tt.want || ok != tt.ok {
			t.Errorf("containerEventType(%s %s) = %v, %v; want %v, %v", tt.kind, tt.typ, got, ok, tt.want, tt.ok)
		}
	}
}

// eventsNode is a test node serving CRI over a unix socket, with its
// journal reader running.
type eventsNode struct {
	*testNode
	client runtimeapi.RuntimeServiceClient
	stop   func() // stops the reader and waits for it
}

func newEventsNode(t *testing.T) *eventsNode {
	t.Helper()
	n := newTestNode(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := NewGRPCServer(GRPCConfig{Log: log, Validator: validate.New(validate.DefaultLimits(), nil)})
	runtimeapi.RegisterRuntimeServiceServer(srv, n.srv)
	sock := filepath.Join(t.TempDir(), "crisp.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		n.srv.WatchEvents(ctx)
		close(done)
	}()
	stop := sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	return &eventsNode{testNode: n, client: runtimeapi.NewRuntimeServiceClient(conn), stop: stop}
}

// subscribe opens an events stream and waits until it is subscribed.
func (n *eventsNode) subscribe(t *testing.T, ctx context.Context) runtimeapi.RuntimeService_GetContainerEventsClient {
	t.Helper()
	stream, err := n.client.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatalf("events stream header: %v", err)
	}
	return stream
}

// recvFor receives events until one of object id, skipping others.
func recvFor(t *testing.T, stream runtimeapi.RuntimeService_GetContainerEventsClient, id string) *runtimeapi.ContainerEventResponse {
	t.Helper()
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv() waiting for an event of %s = %v", id, err)
		}
		if ev.ContainerId == id {
			return ev
		}
	}
}

// TestGetContainerEventsLifecycle takes a container through its life in
// lock-step with two subscribers: each step's event is received on both
// streams before the next step, so every event's statuses are those of the
// state it announces (events are built when read, from the current rows).
func TestGetContainerEventsLifecycle(t *testing.T) {
	n := newEventsNode(t)
	ctx := context.Background()
	streams := []runtimeapi.RuntimeService_GetContainerEventsClient{n.subscribe(t, ctx), n.subscribe(t, ctx)}

	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	side := n.createCtr(t, podID, podCfg, ctrConfig("side")) // the pod's other container
	var id string
	steps := []struct {
		want runtimeapi.ContainerEventType
		do   func()
	}{
		{runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, func() { id = n.createCtr(t, podID, podCfg, ctrConfig("app")) }},
		{runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, func() {
			if _, err := n.srv.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
				t.Fatal(err)
			}
		}},
		{runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, func() {
			if _, err := n.srv.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 5}); err != nil {
				t.Fatal(err)
			}
		}},
		{runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, func() {
			if _, err := n.srv.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, step := range steps {
		step.do()
		for i, stream := range streams {
			ev := recvFor(t, stream, id)
			if ev.ContainerEventType != step.want {
				t.Errorf("stream %d: event %v, want %v", i, ev.ContainerEventType, step.want)
			}
			if ev.CreatedAt == 0 {
				t.Errorf("stream %d: %v has no time", i, ev.ContainerEventType)
			}
			pod := ev.GetPodSandboxStatus()
			if pod.GetId() != podID || pod.GetMetadata().GetUid() != "uid-web" {
				t.Errorf("stream %d: %v has pod status %v, want pod %s with uid-web", i, ev.ContainerEventType, pod, podID)
			}
			statuses := map[string]*runtimeapi.ContainerStatus{}
			for _, st := range ev.ContainersStatuses {
				statuses[st.Id] = st
			}
			if statuses[side] == nil {
				t.Errorf("stream %d: %v lacks the status of the pod's other container", i, ev.ContainerEventType)
			}
			if ev.ContainerEventType == runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT {
				if statuses[id] != nil {
					t.Errorf("stream %d: deleted event still lists the container", i)
				}
			} else if statuses[id].GetMetadata().GetName() != "app" {
				t.Errorf("stream %d: %v lacks the container's own status", i, ev.ContainerEventType)
			}
		}
	}
	if _, err := n.srv.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	// The pod stopping is a stopped event with the pod's id.
	for i, stream := range streams {
		ev := recvFor(t, stream, podID)
		if ev.ContainerEventType != runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT ||
			ev.GetPodSandboxStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("stream %d: pod event %v with pod state %v, want stopped, not ready", i, ev.ContainerEventType, ev.GetPodSandboxStatus().GetState())
		}
	}
}

// A container deleted after its pod's row is gone (a reader catching up
// after both) still names its pod: kubelet skips events without one.
func TestGetContainerEventsAfterPodGone(t *testing.T) {
	n := newEventsNode(t)
	ctx := context.Background()
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	id := n.createCtr(t, podID, podCfg, ctrConfig("app"))

	// Stop the reader, remove everything, subscribe, and only then let
	// a new reader catch up, which finds neither row.
	n.stop()
	after, err := n.store.LastEventSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hub := newEventHub(16, n.srv.log)
	r := &journalReader{store: n.store, hub: hub, log: n.srv.log, batch: 2}
	if err := r.catchUp(ctx); err != nil { // learns what exists
		t.Fatal(err)
	}
	sub, err := hub.subscribe(after)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.srv.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.srv.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.srv.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if err := r.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(sub.events) > 0 {
		ev := <-sub.events
		who := "container"
		if ev.ContainerId == podID {
			who = "pod"
		}
		got = append(got, who+" "+ev.ContainerEventType.String())
		pod := ev.GetPodSandboxStatus()
		if pod.GetMetadata().GetUid() != "uid-web" || pod.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("%v of %s: pod status %v, want uid-web, not ready", ev.ContainerEventType, ev.ContainerId, pod)
		}
	}
	// RemoveContainer of a created container records its exit first.
	want := "container CONTAINER_STOPPED_EVENT,container CONTAINER_DELETED_EVENT,pod CONTAINER_STOPPED_EVENT"
	if strings.Join(got, ",") != want {
		t.Errorf("events = %v, want %s", got, want)
	}
	if len(r.owners) != 0 || len(r.pods) != 0 {
		t.Errorf("reader still remembers %d containers and %d pods after their deletion", len(r.owners), len(r.pods))
	}
}

// A stream whose client goes away unsubscribes, and stopping the reader
// ends the streams left: nothing of either stays behind.
func TestGetContainerEventsCancelAndShutdown(t *testing.T) {
	n := newEventsNode(t)
	ctx, cancel := context.WithCancel(context.Background())
	n.subscribe(t, ctx)
	kept := n.subscribe(t, context.Background())
	if got := n.streamCount(); got != 2 {
		t.Fatalf("hub has %d subscriptions, want 2", got)
	}
	cancel()
	waitUntil(t, "the cancelled stream unsubscribes", func() bool { return n.streamCount() == 1 })

	n.stop()
	_, err := kept.Recv()
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("Recv() after shutdown = %v, want Unavailable, shutting down", err)
	}
	if n.streamCount() != 0 {
		t.Errorf("hub has %d subscriptions after shutdown", n.streamCount())
	}
	late, err := n.client.GetContainerEvents(context.Background(), &runtimeapi.GetEventsRequest{})
	if err == nil {
		_, err = late.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("a stream opened after shutdown: %v, want Unavailable", err)
	}
	waitUntil(t, "no event goroutine is left", func() bool {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		return !strings.Contains(stacks, "cri.(*eventSub).forward") && !strings.Contains(stacks, "cri.(*journalReader).run")
	})
}

func (n *eventsNode) streamCount() int {
	n.srv.events.mu.Lock()
	defer n.srv.events.mu.Unlock()
	return len(n.srv.events.subs)
}

// waitUntil waits for cond, which the code under test makes true soon
// after; it fails, with what it waited for, only if that never happens.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 3000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("gave up waiting until %s", what)
}
