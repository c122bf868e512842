package cri

import (
	"context"
	"log/slog"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// listCache holds the CRI view of every listable pod or container, built
// from SQLite by one query and served until the store commits a write.
// kubelet lists every second and asks again for each pod, while the node
// seldom changes in between; decoding every row's labels and annotations
// again for each call costs milliseconds at a few hundred containers.
// SQLite stays the truth: a view is only ever used for a call that began
// after the writes it reflects (see get).
type listCache[T any] struct {
	mu       sync.Mutex
	done     *sync.Cond // broadcast when a build ends
	building bool
	view     []T
	gen      uint64 // the store's generation noted before view's query
	built    bool
}

func newListCache[T any]() *listCache[T] {
	c := &listCache[T]{}
	c.done = sync.NewCond(&c.mu)
	return c
}

// get returns a view that reflects every write committed before the call:
// the cached one if it was built after the store reached the generation
// the call starts with, else a new one from load. Concurrent callers share
// one build; the items are shared too and must not be changed.
func (c *listCache[T]) get(gen func() uint64, load func() ([]T, error)) ([]T, error) {
	want := gen()
	c.mu.Lock()
	for {
		if c.built && c.gen >= want {
			v := c.view
			c.mu.Unlock()
			return v, nil
		}
		if !c.building {
			break
		}
		c.done.Wait()
	}
	c.building = true
	c.mu.Unlock()

	// Noted before the query: a write committed during it makes the view
	// look older than it is, never newer.
	g := gen()
	view, err := load()

	c.mu.Lock()
	defer c.mu.Unlock()
	c.building = false
	c.done.Broadcast()
	if err != nil {
		return nil, err
	}
	if !c.built || g >= c.gen {
		c.view, c.gen, c.built = view, g, true
	}
	return view, nil
}

// listContainers returns every container kubelet may see (none being
// created or removed), oldest first.
func (s *Server) listContainers(ctx context.Context) ([]*runtimeapi.Container, error) {
	return s.ctrList.get(s.store.Generation, func() ([]*runtimeapi.Container, error) {
		cs, err := s.store.ListContainers(ctx, db.ContainerFilter{})
		if err != nil {
			return nil, err
		}
		out := make([]*runtimeapi.Container, 0, len(cs))
		for _, c := range cs {
			if c.State == db.ContainerCreating || c.State == db.ContainerRemoving {
				continue
			}
			out = append(out, listedContainer(c))
		}
		return out, nil
	})
}

// listSandboxes returns every pod kubelet may see (none being created or
// removed), oldest first.
func (s *Server) listSandboxes(ctx context.Context) ([]*runtimeapi.PodSandbox, error) {
	return s.podList.get(s.store.Generation, func() ([]*runtimeapi.PodSandbox, error) {
		sbs, err := s.store.ListSandboxes(ctx, db.SandboxFilter{})
		if err != nil {
			return nil, err
		}
		out := make([]*runtimeapi.PodSandbox, 0, len(sbs))
		for _, sb := range sbs {
			if sb.State == db.SandboxCreating || sb.State == db.SandboxRemoving {
				continue // not a pod kubelet can act on yet, or any more
			}
			out = append(out, listedSandbox(sb))
		}
		return out, nil
	})
}

// listedContainer is a container as ListContainers reports it.
func listedContainer(c db.Container) *runtimeapi.Container {
	return &runtimeapi.Container{
		Id: c.ID, PodSandboxId: c.SandboxID, Metadata: &runtimeapi.ContainerMetadata{Name: c.KubeName, Attempt: c.Attempt},
		Image: &runtimeapi.ImageSpec{Image: c.Image}, ImageRef: c.ImageRef, ImageId: c.ImageRef, State: containerState(c.State),
		CreatedAt: c.CreatedAt, Labels: c.Labels, Annotations: c.Annotations,
	}
}

// listedSandbox is a pod as ListPodSandbox reports it.
func listedSandbox(sb db.Sandbox) *runtimeapi.PodSandbox {
	return &runtimeapi.PodSandbox{
		Id: sb.ID, Metadata: sandboxMetadata(sb), State: sandboxState(sb.State), CreatedAt: sb.CreatedAt,
		Labels: sb.Labels, Annotations: sb.Annotations, RuntimeHandler: sb.Handler,
	}
}

// hasLabels reports whether labels include every pair of selector.
func hasLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// WarmLists builds the container and pod list views in the background,
// so that the first lists after a start (kubelet relists at once, and a
// restarted node's full list is what it waits for) find them built, or
// join the build in flight, rather than start it then. The channel closes
// when both builds have ended, built or not.
func (s *Server) WarmLists(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		start := time.Now()
		ctrs, err := s.listContainers(ctx)
		if err != nil {
			s.log.Debug("container list not built ahead", slog.Any(logkey.Err, err))
		}
		built := time.Now()
		pods, err := s.listSandboxes(ctx)
		if err != nil {
			s.log.Debug("pod list not built ahead", slog.Any(logkey.Err, err))
		}
		s.log.Debug("list views built ahead", slog.Int("containers", len(ctrs)), slog.Duration("containers_took", built.Sub(start)),
			slog.Int("pods", len(pods)), slog.Duration("pods_took", time.Since(built)))
	}()
	return done
}

// builtAt is the generation of the view held, and whether there is one.
func (c *listCache[T]) builtAt() (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen, c.built
}
