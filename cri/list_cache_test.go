package cri

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
)

func TestListCacheFreshness(t *testing.T) {
	var gen atomic.Uint64
	var loads atomic.Int32
	c := newListCache[uint64]()
	load := func() ([]uint64, error) {
		loads.Add(1)
		return []uint64{gen.Load()}, nil
	}
	for i := 0; i < 3; i++ {
		if v, err := c.get(gen.Load, load); err != nil || v[0] != 0 {
			t.Fatalf("get() = %v, %v; want the view of generation 0", v, err)
		}
	}
	if loads.Load() != 1 {
		t.Errorf("3 gets without a write loaded %d times, want 1", loads.Load())
	}
	gen.Add(1) // a write committed before the next call
	if v, _ := c.get(gen.Load, load); v[0] != 1 || loads.Load() != 2 {
		t.Errorf("get() after a write = %v after %d loads, want the view of generation 1 from a second load", v, loads.Load())
	}
	// A failed build is returned and not kept.
	gen.Add(1)
	boom := errors.New("boom")
	if _, err := c.get(gen.Load, func() ([]uint64, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("get() with a failing load = %v, want boom", err)
	}
	if v, _ := c.get(gen.Load, load); v[0] != 2 {
		t.Errorf("get() after a failed build = %v, want a fresh view of generation 2", v)
	}
}

// Callers that arrive while a build runs share it when it started after
// their writes; a caller whose write committed after the build began
// gets a build of its own.
func TestListCacheSharesBuilds(t *testing.T) {
	var gen atomic.Uint64
	var loads atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	c := newListCache[uint64]()
	load := func() ([]uint64, error) {
		if loads.Add(1) == 1 {
			close(started)
			<-release
		}
		return []uint64{gen.Load()}, nil
	}
	var wg sync.WaitGroup
	results := make([]uint64, 5)
	wg.Go(func() { v, _ := c.get(gen.Load, load); results[0] = v[0] })
	<-started
	for i := 1; i < 4; i++ {
		wg.Go(func() { v, _ := c.get(gen.Load, load); results[i] = v[0] })
	}
	time.Sleep(50 * time.Millisecond) // let them wait on the build
	gen.Add(1)
	wg.Go(func() { v, _ := c.get(gen.Load, load); results[4] = v[0] })
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if results[4] != 1 {
		t.Errorf("a call that began after a write got the view of generation %d, want 1", results[4])
	}
	if n := loads.Load(); n != 2 {
		t.Errorf("5 concurrent calls around one write loaded %d times, want 2", n)
	}
}

// The CRI lists answer from the cache and see every change the server
// made before the call.
func TestListsSeeEveryWrite(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	cfg := n.podConfig("web")
	podID := n.runPod(t, cfg, "")
	count := func(f *runtimeapi.ContainerFilter) int {
		resp, err := n.srv.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.Containers)
	}
	running := &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}
	if count(nil) != 0 || count(running) != 0 {
		t.Fatalf("containers before any = %d", count(nil))
	}
	id := n.startCtr(t, podID, cfg, ctrConfig("app"))
	if count(nil) != 1 || count(running) != 1 || count(&runtimeapi.ContainerFilter{PodSandboxId: podID[:12]}) != 1 ||
		count(&runtimeapi.ContainerFilter{Id: id[:8]}) != 1 {
		t.Errorf("after StartContainer: all %d, running %d; want 1 each", count(nil), count(running))
	}
	if count(&runtimeapi.ContainerFilter{LabelSelector: map[string]string{"no": "such"}}) != 0 {
		t.Errorf("a label selector nothing matches listed containers")
	}
	if _, err := n.srv.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if count(running) != 0 || count(nil) != 1 {
		t.Errorf("after StopContainer: running %d, all %d; want 0, 1", count(running), count(nil))
	}
	if err := n.store.SetSandboxState(ctx, podID, db.SandboxNotReady, db.SandboxReady); err != nil {
		t.Fatal(err)
	}
	ready := &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}
	if resp, err := n.srv.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: ready}); err != nil || len(resp.Items) != 0 {
		t.Errorf("ready pods after the pod's row went notready = %v, %v; want none", resp.GetItems(), err)
	}
}

// WarmLists builds both views ahead of the first call, at the store's
// current generation.
func TestWarmLists(t *testing.T) {
	n := newTestNode(t)
	cfg := n.podConfig("web")
	podID := n.runPod(t, cfg, "")
	n.startCtr(t, podID, cfg, ctrConfig("app"))
	done := n.srv.WarmLists(context.Background())
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("WarmLists did not end within 5 s")
	}
	warm := func() bool {
		gen := n.store.Generation()
		for _, c := range []interface{ builtAt() (uint64, bool) }{n.srv.ctrList, n.srv.podList} {
			if g, ok := c.builtAt(); !ok || g < gen {
				return false
			}
		}
		return true
	}
	if !warm() {
		t.Fatal("the list views were not built when WarmLists said it was done")
	}
	resp, err := n.srv.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{})
	if err != nil || len(resp.Containers) != 1 {
		t.Errorf("ListContainers() after WarmLists = %v, %v; want the one container", resp.GetContainers(), err)
	}
}
