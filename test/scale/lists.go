package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// listCall is one kind of list: it makes its i-th request and returns the
// response.
type listCall struct {
	op   string
	call func(ctx context.Context, i int) (proto.Message, error)
}

func (b *bench) containerLists() []listCall {
	list := func(f func(i int) *runtimeapi.ContainerFilter) func(ctx context.Context, i int) (proto.Message, error) {
		return func(ctx context.Context, i int) (proto.Message, error) {
			return b.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: f(i)})
		}
	}
	running := &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}
	calls := []listCall{
		{"ListContainers all", list(func(int) *runtimeapi.ContainerFilter { return nil })},
		{"ListContainers state=RUNNING", list(func(int) *runtimeapi.ContainerFilter {
			return &runtimeapi.ContainerFilter{State: running}
		})},
		{"ListContainers tier=hot", list(func(int) *runtimeapi.ContainerFilter {
			return &runtimeapi.ContainerFilter{LabelSelector: map[string]string{labelTier: "hot"}}
		})},
	}
	if len(b.podIDs) > 0 {
		calls = append(calls, listCall{"ListContainers by pod", list(func(i int) *runtimeapi.ContainerFilter {
			return &runtimeapi.ContainerFilter{PodSandboxId: b.podIDs[i%len(b.podIDs)]}
		})})
	}
	return calls
}

func (b *bench) podLists() []listCall {
	list := func(f *runtimeapi.PodSandboxFilter) func(ctx context.Context, i int) (proto.Message, error) {
		return func(ctx context.Context, i int) (proto.Message, error) {
			return b.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: f})
		}
	}
	return []listCall{
		{"ListPodSandbox all", list(nil)},
		{"ListPodSandbox state=READY", list(&runtimeapi.PodSandboxFilter{
			State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}})},
		{"ListPodSandbox tier=hot", list(&runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{labelTier: "hot"}})},
	}
}

func (b *bench) statsLists() []listCall {
	return []listCall{
		{"ListContainerStats all", func(ctx context.Context, _ int) (proto.Message, error) {
			return b.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
		}},
		{"ListPodSandboxStats all", func(ctx context.Context, _ int) (proto.Message, error) {
			return b.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
		}},
		// The same containers by label: a runtime that shares one reading
		// among unfiltered calls (crisp, for up to a second) reads afresh.
		{"ListContainerStats by label (fresh)", func(ctx context.Context, _ int) (proto.Message, error) {
			return b.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{
				Filter: &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{labelNamespace: b.cfg.namespace}}})
		}},
	}
}

// lists times every container and pod list -list-iters times in turn,
// then ListContainers all with -concurrency calls at once.
func (b *bench) lists(ctx context.Context) error {
	calls := append(b.containerLists(), b.podLists()...)
	if err := b.sequential(ctx, calls); err != nil {
		return err
	}
	return b.concurrent(ctx, calls[0])
}

// stats times ListContainerStats and ListPodSandboxStats -list-iters times
// in turn, then ListContainerStats with -concurrency calls at once.
func (b *bench) stats(ctx context.Context) error {
	calls := b.statsLists()
	if err := b.sequential(ctx, calls); err != nil {
		return err
	}
	return b.concurrent(ctx, calls[0])
}

// sequential makes each call -list-iters times after one untimed warm-up.
// A call that fails is recorded and noted, and its kind is not tried again:
// a runtime may not implement every list.
func (b *bench) sequential(ctx context.Context, calls []listCall) error {
	for _, c := range calls {
		if _, err := b.listOnce(ctx, c, 0, ""); err != nil {
			b.failed(ctx, c.op, err)
			continue
		}
		for i := range b.cfg.listIters {
			if _, err := b.listOnce(ctx, c, i, c.op); err != nil {
				b.failed(ctx, c.op, err)
				break
			}
		}
	}
	return ctx.Err()
}

// concurrent makes list-iters/5 waves (at least one) of -concurrency
// calls of c at once and records each call.
func (b *bench) concurrent(ctx context.Context, c listCall) error {
	op := fmt.Sprintf("%s x%d at once", c.op, b.cfg.concurrency)
	waves := max(1, b.cfg.listIters/5)
	for range waves {
		errs := make([]error, b.cfg.concurrency)
		var wg sync.WaitGroup
		for i := range b.cfg.concurrency {
			wg.Go(func() { _, errs[i] = b.listOnce(ctx, c, i, op) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			b.failed(ctx, op, err)
			break
		}
	}
	return ctx.Err()
}

func (b *bench) failed(ctx context.Context, op string, err error) {
	if ctx.Err() == nil {
		b.rep.note("%s failed, not tried again: %v", op, err)
	}
}

// listOnce makes call i of c and records it as op with its response size
// (op "": not recorded).
func (b *bench) listOnce(ctx context.Context, c listCall, i int, op string) (proto.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	start := time.Now()
	resp, err := c.call(ctx, i)
	d := time.Since(start)
	if op != "" {
		size := 0
		if err == nil {
			size = proto.Size(resp)
		}
		b.rec.add(op, d, size, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.op, err)
	}
	return resp, nil
}
