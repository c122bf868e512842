package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	cstorage "go.podman.io/storage"
	"go.podman.io/storage/pkg/directory"

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// LayerUsage is the disk use of a container's writable layer (its overlay
// upper dir): what the container wrote over its image.
type LayerUsage struct {
	Bytes  uint64
	Inodes uint64
	At     time.Time // when it was measured
}

// LayerUsages measures containers' writable layers and keeps the figures:
// measuring walks the layer's tree, too slow to do for hundreds of
// containers on every stats call. A container's first figure is measured
// when asked; later asks get the kept figure at once and, when it is
// older than maxAge, queue a fresh walk for the single background worker
// (Run), like containerd's periodic snapshot usage sync. Safe for
// concurrent use.
type LayerUsages struct {
	dirOf  func(id string) (string, error)
	walk   func(dir string) (LayerUsage, error)
	maxAge time.Duration
	log    *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]*layerEntry
	queue   chan string
}

type layerEntry struct {
	dir    string
	usage  LayerUsage
	asked  time.Time // last Get; entries not asked for long are dropped
	queued bool
}

// layerQueue bounds the refreshes waiting for the worker; a stale entry
// that finds it full is queued by a later Get.
const layerQueue = 1024

// NewLayerUsages measures the writable layers of s's containers,
// refreshing figures older than maxAge in the background once Run runs.
func (s *Store) NewLayerUsages(maxAge time.Duration, log *slog.Logger) *LayerUsages {
	return newLayerUsages(s.UpperDir, walkLayer, maxAge, log)
}

func newLayerUsages(dirOf func(string) (string, error), walk func(string) (LayerUsage, error), maxAge time.Duration, log *slog.Logger) *LayerUsages {
	return &LayerUsages{dirOf: dirOf, walk: walk, maxAge: maxAge, log: log, now: time.Now,
		entries: map[string]*layerEntry{}, queue: make(chan string, layerQueue)}
}

// UpperDir is container id's writable layer directory. A container
// unknown to storage is ErrNotFound; a graph driver without upper dirs
// (vfs) is an error.
func (s *Store) UpperDir(id string) (string, error) {
	c, err := s.store.Container(id)
	if errors.Is(err, cstorage.ErrContainerUnknown) {
		return "", fmt.Errorf("storage of container %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("storage of container %s: %w", id, err)
	}
	driver, err := s.store.GraphDriver()
	if err != nil {
		return "", fmt.Errorf("graph driver for container %s: %w", id, err)
	}
	meta, err := driver.Metadata(c.LayerID)
	if err != nil {
		return "", fmt.Errorf("layer %s of container %s: %w", c.LayerID, id, err)
	}
	dir := meta["UpperDir"]
	if dir == "" {
		return "", fmt.Errorf("layer %s of container %s: the %s driver has no upper dir to measure", c.LayerID, id, s.cfg.Driver)
	}
	return dir, nil
}

func walkLayer(dir string) (LayerUsage, error) {
	u, err := directory.Usage(dir)
	if err != nil {
		return LayerUsage{}, fmt.Errorf("measure %s: %w", dir, err)
	}
	return LayerUsage{Bytes: uint64(max(u.Size, 0)), Inodes: uint64(max(u.InodeCount, 0)), At: time.Now()}, nil
}

// Get returns container id's writable layer usage: measured now the first
// time, the kept figure afterwards (queued for a refresh when older than
// maxAge). Errors wrap ErrNotFound for a container storage does not know.
func (u *LayerUsages) Get(id string) (LayerUsage, error) {
	now := u.now()
	u.mu.Lock()
	e, ok := u.entries[id]
	if ok {
		e.asked = now
		if now.Sub(e.usage.At) > u.maxAge && !e.queued {
			select {
			case u.queue <- id:
				e.queued = true
			default:
			}
		}
		usage := e.usage
		u.mu.Unlock()
		return usage, nil
	}
	u.mu.Unlock()

	dir, err := u.dirOf(id)
	if err != nil {
		return LayerUsage{}, err
	}
	usage, err := u.walk(dir)
	if err != nil {
		return LayerUsage{}, fmt.Errorf("writable layer of container %s: %w", id, err)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if e, ok := u.entries[id]; ok { // measured meanwhile by another call
		return e.usage, nil
	}
	u.entries[id] = &layerEntry{dir: dir, usage: usage, asked: now}
	return usage, nil
}

// Forget drops container id's figure (it was removed).
func (u *LayerUsages) Forget(id string) {
	u.mu.Lock()
	delete(u.entries, id)
	u.mu.Unlock()
}

// Run refreshes queued figures one at a time until ctx ends, and drops
// the figures of containers nobody asked about for ten times maxAge (they
// were removed). The caller owns the goroutine.
func (u *LayerUsages) Run(ctx context.Context) {
	prune := time.NewTicker(10 * u.maxAge)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-prune.C:
			u.prune()
		case id := <-u.queue:
			u.refresh(id)
		}
	}
}

func (u *LayerUsages) refresh(id string) {
	u.mu.Lock()
	e, ok := u.entries[id]
	u.mu.Unlock()
	if !ok {
		return
	}
	usage, err := u.walk(e.dir)
	u.mu.Lock()
	defer u.mu.Unlock()
	if cur, ok := u.entries[id]; ok && cur == e {
		e.queued = false
		if err != nil {
			// The layer went with its container, most often; the entry
			// ages out unless someone still asks.
			u.log.Debug("writable layer not measured", slog.String(logkey.Container, id), slog.Any(logkey.Err, err))
			return
		}
		e.usage = usage
	}
}

func (u *LayerUsages) prune() {
	cutoff := u.now().Add(-10 * u.maxAge)
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, e := range u.entries {
		if e.asked.Before(cutoff) {
			delete(u.entries, id)
		}
	}
}
