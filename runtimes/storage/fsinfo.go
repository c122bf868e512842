package storage

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// FsUsage is the space the store takes on its filesystem.
type FsUsage struct {
	Mountpoint string
	Bytes      uint64 // allocated bytes (st_blocks), hard links counted once
	Inodes     uint64
	At         time.Time
}

// DefaultUsageInterval is how often the cached usage is measured again
// when Config.UsageInterval is unset. Kubelet asks every few seconds for
// eviction and image GC, which act on whole percents of a disk, while a
// walk is I/O proportional to the store: a figure a minute old, refreshed
// at once after the store's own changes, serves them at a walk a minute.
const DefaultUsageInterval = time.Minute

// usageCache is the last measurement of the store and what keeps it
// current. Safe for concurrent use.
type usageCache struct {
	mu   sync.Mutex // guards last and have
	last FsUsage
	have bool

	walking sync.Mutex // one walk at a time
	walks   uint64     // walks made, guarded by walking

	changed chan struct{} // one slot: the store changed, measure again
}

func newUsageCache() *usageCache { return &usageCache{changed: make(chan struct{}, 1)} }

func (c *usageCache) get() (FsUsage, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.have
}

func (c *usageCache) set(u FsUsage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last, c.have = u, true
}

// Usage returns the space the store takes, from the last measurement
// (its At says when that was). The first call measures; after that a
// background loop measures again every Config.UsageInterval and soon after
// a pull, load or removal, so a call never walks the store. Safe for
// concurrent use.
func (s *Store) Usage(ctx context.Context) (FsUsage, error) {
	if u, ok := s.usage.get(); ok {
		return u, nil
	}
	return s.measureUsage(ctx, "first call", true)
}

// usageChanged asks the refresh loop to measure again soon; it never
// blocks, and changes close together make one walk.
func (s *Store) usageChanged() {
	select {
	case s.usage.changed <- struct{}{}:
	default:
	}
}

// refreshUsage keeps the cached usage current until ctx ends. It measures
// only once a caller has asked for usage, so a node nobody asks pays no
// walks.
func (s *Store) refreshUsage(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		trigger := "periodic"
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.usage.changed:
			trigger = "store changed"
		}
		if _, ok := s.usage.get(); !ok {
			continue
		}
		if _, err := s.measureUsage(ctx, trigger, false); err != nil && ctx.Err() == nil {
			s.log.Warn("measure image store; keeping the last figure", slog.String("graph_root", s.store.GraphRoot()), slog.Any(logkey.Err, err))
		}
	}
}

// measureUsage walks the store and caches the result. With reuse, a
// figure another caller measured while this one waited for the walk lock
// is returned instead of walking again. Each walk is logged at debug
// with its running count, which tests read to tell a cached answer from
// a walk.
func (s *Store) measureUsage(ctx context.Context, trigger string, reuse bool) (FsUsage, error) {
	s.usage.walking.Lock()
	defer s.usage.walking.Unlock()
	if u, ok := s.usage.get(); ok && reuse {
		return u, nil
	}
	start := time.Now()
	u, err := s.walkUsage(ctx)
	if err != nil {
		return u, err
	}
	s.usage.walks++
	s.usage.set(u)
	s.log.Debug("measured image store", slog.String("graph_root", u.Mountpoint), slog.Uint64("bytes", u.Bytes),
		slog.Uint64("inodes", u.Inodes), slog.Uint64("walks", s.usage.walks), slog.String("trigger", trigger),
		slog.Duration(logkey.Took, time.Since(start)))
	return u, nil
}

// walkUsage measures the graph root by walking it, as du does: I/O
// proportional to the store's size.
func (s *Store) walkUsage(ctx context.Context) (FsUsage, error) {
	root := s.store.GraphRoot()
	u := FsUsage{Mountpoint: root, At: time.Now()}
	var rootDev uint64
	if fi, err := os.Stat(root); err == nil {
		rootDev = uint64(fi.Sys().(*syscall.Stat_t).Dev)
	}
	seen := map[uint64]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a file removed while walking is not an error
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok || seen[st.Ino] {
			return nil
		}
		if uint64(st.Dev) != rootDev {
			// A container's rootfs mount: its bytes are counted in its layers.
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		seen[st.Ino] = true
		u.Inodes++
		u.Bytes += uint64(st.Blocks) * 512
		return nil
	})
	return u, err
}
