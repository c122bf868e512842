package cri

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// DefaultEventBuffer is how many container events a GetContainerEvents
// stream may fall behind by before it is ended. Kubelet reads its stream
// into a channel of 1,000 and only looks at each event, so it never comes
// near; a larger backlog means a stuck client, and holding more for it
// only delays its relist.
const DefaultEventBuffer = 1024

// maxEventStreams bounds the GetContainerEvents streams open at once:
// kubelet opens one, each takes a buffer.
const maxEventStreams = 64

// eventHub fans container events out to the GetContainerEvents streams.
// One journal reader publishes each event once, in journal order; every
// stream has a bounded buffer of its own, so a slow stream never holds the
// reader or the other streams back. A stream whose buffer is full is ended
// with ErrFellBehind rather than skip an event: its client relists, as
// kubelet does whenever it opens a stream. Safe for concurrent use.
type eventHub struct {
	buffer int
	log    *slog.Logger

	mu     sync.Mutex
	subs   map[*eventSub]struct{}
	nextID uint64
	closed error // why the hub stopped; nil while it runs
}

// eventSub is one stream's subscription.
type eventSub struct {
	id     uint64
	after  int64 // the stream gets journal entries after this sequence number
	events chan *runtimeapi.ContainerEventResponse
	ended  chan struct{} // closed when the hub drops the subscription
	err    error         // why it was dropped, written before ended closes
}

func newEventHub(buffer int, log *slog.Logger) *eventHub {
	if buffer <= 0 {
		buffer = DefaultEventBuffer
	}
	return &eventHub{buffer: buffer, log: log, subs: map[*eventSub]struct{}{}}
}

// subscribe opens a subscription to the events after journal sequence
// number after. It fails with ErrOverloaded when maxEventStreams are open,
// and with the hub's reason once it is closed.
func (h *eventHub) subscribe(after int64) (*eventSub, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed != nil {
		return nil, h.closed
	}
	if len(h.subs) >= maxEventStreams {
		return nil, fmt.Errorf("%d container event streams are open already: %w", len(h.subs), ErrOverloaded)
	}
	h.nextID++
	sub := &eventSub{id: h.nextID, after: after,
		events: make(chan *runtimeapi.ContainerEventResponse, h.buffer), ended: make(chan struct{})}
	h.subs[sub] = struct{}{}
	return sub, nil
}

// unsubscribe drops sub, if the hub has not dropped it already.
func (h *eventHub) unsubscribe(sub *eventSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, sub)
}

// wants reports whether any subscription is to get the journal entry seq,
// so that the reader builds an event only when someone will read it.
func (h *eventHub) wants(seq int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		if seq > sub.after {
			return true
		}
	}
	return false
}

// oldest is the earliest sequence number any subscription starts after,
// or seq if none starts earlier: where the reader must start from.
func (h *eventHub) oldest(seq int64) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		seq = min(seq, sub.after)
	}
	return seq
}

// publish hands ev, journal entry seq, to every subscription that starts
// before it. One whose buffer is full is ended: it fell behind.
func (h *eventHub) publish(seq int64, ev *runtimeapi.ContainerEventResponse) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		if seq <= sub.after {
			continue
		}
		select {
		case sub.events <- ev:
		default:
			behind := len(sub.events) + 1
			h.end(sub, fmt.Errorf("events stream of subscriber %d fell behind by %d events; relist: %w", sub.id, behind, ErrFellBehind))
			h.log.Warn("container events stream fell behind; ended it", slog.Uint64(logkey.Subscriber, sub.id),
				slog.Int("behind", behind), slog.Int64("seq", seq))
		}
	}
}

// close ends every subscription with err and refuses new ones with it.
func (h *eventHub) close(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = err
	for sub := range h.subs {
		h.end(sub, err)
	}
}

// end drops sub with err; h.mu is held.
func (h *eventHub) end(sub *eventSub, err error) {
	sub.err = err
	close(sub.ended)
	delete(h.subs, sub)
}

// forward sends sub's events with send, in order, until ctx ends, send
// fails or the hub drops sub. An ended subscription stops at once: what is
// still buffered is discarded, since the client relists anyway.
func (sub *eventSub) forward(ctx context.Context, send func(*runtimeapi.ContainerEventResponse) error) error {
	for {
		select {
		case <-sub.ended:
			return sub.err
		default:
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sub.ended:
			return sub.err
		case ev := <-sub.events:
			if err := send(ev); err != nil {
				return fmt.Errorf("send container event to subscriber %d: %w", sub.id, err)
			}
		}
	}
}
