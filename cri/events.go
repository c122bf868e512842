package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/logkey"
)

const (
	// eventPollInterval is how often the journal reader looks without
	// being woken: the store wakes it after each of its own commits, so
	// this only catches rows written some other way.
	eventPollInterval = time.Second
	// eventBatch is how many journal entries the reader takes per query.
	eventBatch = 256
)

// GetContainerEvents streams container lifecycle events from the events
// journal, in journal order: created, started, stopped and deleted, each
// with the pod's status and the statuses of all the pod's containers as
// they are when the event is read. A pod that stops (StopPodSandbox, or
// the reconciler finding it dead) is a stopped event with the pod's id.
// The stream gets what commits after it opened (clients relist when they
// connect, as kubelet does); its header is sent once it is subscribed. A
// stream that falls DefaultEventBuffer (or the configured buffer) events
// behind ends with Aborted, never skipping one; at shutdown streams end
// with Unavailable.
func (s *Server) GetContainerEvents(_ *runtimeapi.GetEventsRequest, stream runtimeapi.RuntimeService_GetContainerEventsServer) error {
	ctx := stream.Context()
	after, err := s.store.LastEventSeq(ctx)
	if err != nil {
		return err
	}
	sub, err := s.events.subscribe(after)
	if err != nil {
		return err
	}
	defer s.events.unsubscribe(sub)
	log := s.log.With(slog.Uint64(logkey.Subscriber, sub.id))
	// The header tells a client that waits for it that every later commit
	// reaches it; kubelet does not wait.
	if err := stream.SendHeader(nil); err != nil {
		return fmt.Errorf("send header to events subscriber %d: %w", sub.id, err)
	}
	log.Info("container events stream opened", slog.Int64("after", after))
	err = sub.forward(ctx, stream.Send)
	log.Info("container events stream ended", slog.Any(logkey.Err, err))
	return err
}

// WatchEvents reads the events journal and feeds the GetContainerEvents
// streams until ctx ends; then it ends every stream with Unavailable, so
// that a graceful stop of the gRPC server, which waits for open streams,
// does not wait on them. It reads when the store signals a commit, and
// every eventPollInterval. A failed read is logged and retried; it never
// skips an entry.
func (s *Server) WatchEvents(ctx context.Context) {
	r := &journalReader{store: s.store, hub: s.events, log: s.log, batch: eventBatch}
	r.run(ctx, eventPollInterval)
	s.events.close(fmt.Errorf("crispd is shutting down; reconnect and relist: %w", ErrUnavailable))
}

// journalReader turns journal entries into container events for the hub.
// It is the only reader, so the statuses of an event are built once for
// every stream. Not safe for concurrent use: one goroutine runs it.
type journalReader struct {
	store *db.Store
	hub   *eventHub
	log   *slog.Logger
	batch int

	started bool
	cursor  int64 // the last journal entry handled
	// What deleted rows no longer tell: the pod each container belongs to,
	// and each pod's status as created, for the events that follow their
	// rows' deletion.
	owners map[string]string
	pods   map[string]*runtimeapi.PodSandboxStatus
}

func (r *journalReader) run(ctx context.Context, poll time.Duration) {
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		if err := r.catchUp(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("read the events journal; will retry", slog.Int64("after", r.cursor), slog.Any(logkey.Err, err))
		}
		select {
		case <-ctx.Done():
			return
		case <-r.store.Commits():
		case <-tick.C:
		}
	}
}

// start places the cursor at the end of the journal, or before it if a
// stream subscribed earlier, and learns the pods and containers that exist.
func (r *journalReader) start(ctx context.Context) error {
	last, err := r.store.LastEventSeq(ctx)
	if err != nil {
		return err
	}
	sbs, err := r.store.ListSandboxes(ctx, db.SandboxFilter{})
	if err != nil {
		return fmt.Errorf("list pods for the events journal: %w", err)
	}
	cs, err := r.store.ListContainers(ctx, db.ContainerFilter{})
	if err != nil {
		return fmt.Errorf("list containers for the events journal: %w", err)
	}
	r.owners = make(map[string]string, len(cs))
	r.pods = make(map[string]*runtimeapi.PodSandboxStatus, len(sbs))
	for _, sb := range sbs {
		r.pods[sb.ID] = r.statusOf(sb)
	}
	for _, c := range cs {
		r.owners[c.ID] = c.SandboxID
	}
	r.cursor = r.hub.oldest(last)
	r.started = true
	return nil
}

// catchUp handles every journal entry after the cursor.
func (r *journalReader) catchUp(ctx context.Context) error {
	if !r.started {
		if err := r.start(ctx); err != nil {
			return err
		}
	}
	for {
		batch, err := r.store.EventsWithSandbox(ctx, r.cursor, r.batch)
		if err != nil {
			return err
		}
		for _, e := range batch {
			if err := r.handle(ctx, e); err != nil {
				return err
			}
			r.cursor = e.Seq
		}
		if len(batch) < r.batch {
			return nil
		}
	}
}

// handle publishes the container event entry e is, if it is one and a
// stream wants it, and keeps what the reader remembers up to date.
func (r *journalReader) handle(ctx context.Context, e db.EventWithSandbox) error {
	sandboxID, err := r.remember(ctx, e)
	if err != nil {
		return err
	}
	if typ, ok := containerEventType(e.Event); ok && r.hub.wants(e.Seq) {
		ev, err := r.build(ctx, e.ObjectID, typ, e.At, sandboxID)
		if err != nil {
			return err
		}
		r.hub.publish(e.Seq, ev)
	}
	if e.Type == db.EventTypeDeleted {
		delete(r.owners, e.ObjectID)
		delete(r.pods, e.ObjectID)
	}
	return nil
}

// remember records e's pod while its rows still say it, and returns the
// pod of e's object: the pod itself, or a container's pod.
func (r *journalReader) remember(ctx context.Context, e db.EventWithSandbox) (string, error) {
	switch e.Kind {
	case db.EventKindContainer:
		if e.SandboxID != "" {
			r.owners[e.ObjectID] = e.SandboxID
		}
		return r.owners[e.ObjectID], nil
	case db.EventKindPod:
		if _, ok := r.pods[e.ObjectID]; ok || e.Type == db.EventTypeDeleted {
			return e.ObjectID, nil
		}
		sb, err := r.store.Sandbox(ctx, e.ObjectID)
		switch {
		case errors.Is(err, db.ErrNotFound):
			// Deleted since; its deletion follows in the journal.
		case err != nil:
			return "", fmt.Errorf("read pod %s for the events journal: %w", e.ObjectID, err)
		default:
			r.pods[e.ObjectID] = r.statusOf(sb)
		}
		return e.ObjectID, nil
	}
	return "", nil
}

// containerEventType says which container event a journal entry is. Rows
// on their way in or out (creating, removing) are none; neither are the
// reconciler's repair notes, whose effects are state changes of their own.
// A pod that stops is a stopped event: kubelet relists the pod on one.
func containerEventType(e db.Event) (runtimeapi.ContainerEventType, bool) {
	switch e.Kind {
	case db.EventKindContainer:
		switch e.Type {
		case string(db.ContainerCreated):
			return runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, true
		case string(db.ContainerRunning):
			return runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, true
		case string(db.ContainerExited):
			return runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, true
		case db.EventTypeDeleted:
			return runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, true
		}
	case db.EventKindPod:
		if e.Type == string(db.SandboxNotReady) {
			return runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, true
		}
	}
	return 0, false
}

// build is the event of container (or pod) id, at nanoseconds, with the
// status of pod sandboxID and of every container of it. Kubelet skips an
// event without the pod's metadata (it names the pod to relist), so one
// is sent with no pod only when the reader never knew it.
func (r *journalReader) build(ctx context.Context, id string, typ runtimeapi.ContainerEventType, at int64, sandboxID string) (*runtimeapi.ContainerEventResponse, error) {
	ev := &runtimeapi.ContainerEventResponse{ContainerId: id, ContainerEventType: typ, CreatedAt: at}
	if sandboxID == "" {
		r.log.Debug("container event of an unknown pod", slog.String(logkey.Container, id))
		return ev, nil
	}
	pod, err := r.podStatus(ctx, sandboxID)
	if err != nil {
		return nil, err
	}
	ev.PodSandboxStatus = pod
	cs, err := r.store.ListContainers(ctx, db.ContainerFilter{SandboxID: sandboxID})
	if err != nil {
		return nil, fmt.Errorf("list containers of pod %s for an event: %w", sandboxID, err)
	}
	for _, c := range cs {
		if c.State == db.ContainerCreating || c.State == db.ContainerRemoving {
			continue // not listed to kubelet either
		}
		st, err := containerStatus(c)
		if err != nil {
			// One unreadable row must not stop the stream: the event
			// goes out without that container's status.
			r.log.Warn("container status for an event", slog.String(logkey.Container, c.ID), slog.Any(logkey.Err, err))
			continue
		}
		ev.ContainersStatuses = append(ev.ContainersStatuses, st)
	}
	return ev, nil
}

// podStatus is pod id's status now, or the one it was created with,
// marked not ready, once its row is gone.
func (r *journalReader) podStatus(ctx context.Context, id string) (*runtimeapi.PodSandboxStatus, error) {
	sb, err := r.store.Sandbox(ctx, id)
	switch {
	case errors.Is(err, db.ErrNotFound):
		known, ok := r.pods[id]
		if !ok {
			return nil, nil
		}
		gone := proto.CloneOf(known)
		gone.State = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
		gone.Network = nil
		return gone, nil
	case err != nil:
		return nil, fmt.Errorf("read pod %s for an event: %w", id, err)
	}
	return r.statusOf(sb), nil
}

// statusOf is sb's status; a stored config that cannot be decoded leaves
// out what comes from it rather than lose the event.
func (r *journalReader) statusOf(sb db.Sandbox) *runtimeapi.PodSandboxStatus {
	st, err := sandboxStatus(sb)
	if err != nil {
		r.log.Warn("pod status for an event", slog.String(logkey.Pod, sb.ID), slog.Any(logkey.Err, err))
		return &runtimeapi.PodSandboxStatus{Id: sb.ID, Metadata: sandboxMetadata(sb), State: sandboxState(sb.State),
			CreatedAt: sb.CreatedAt, Labels: sb.Labels, Annotations: sb.Annotations, RuntimeHandler: sb.Handler}
	}
	return st
}
