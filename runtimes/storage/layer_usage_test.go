package storage

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeLayers counts walks and serves sizes set by the test.
type fakeLayers struct {
	mu    sync.Mutex
	size  map[string]uint64
	walks map[string]int
}

func (f *fakeLayers) dirOf(id string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.size[id]; !ok {
		return "", ErrNotFound
	}
	return "/layers/" + id, nil
}

func (f *fakeLayers) walk(dir string) (LayerUsage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := filepath.Base(dir)
	f.walks[id]++
	return LayerUsage{Bytes: f.size[id], Inodes: 1, At: time.Now()}, nil
}

func (f *fakeLayers) walked(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.walks[id]
}

func TestLayerUsagesCachesAndRefreshes(t *testing.T) {
	f := &fakeLayers{size: map[string]uint64{"c1": 100}, walks: map[string]int{}}
	u := newLayerUsages(f.dirOf, f.walk, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	clock := time.Now()
	u.now = func() time.Time { return clock }

	got, err := u.Get("c1")
	if err != nil || got.Bytes != 100 {
		t.Fatalf("Get(c1) = %+v, %v, want 100 bytes", got, err)
	}
	f.mu.Lock()
	f.size["c1"] = 500
	f.mu.Unlock()
	// Fresh: the kept figure, no walk.
	if got, _ := u.Get("c1"); got.Bytes != 100 || f.walked("c1") != 1 {
		t.Errorf("Get(c1) while fresh = %+v after %d walks, want the kept 100 after 1", got, f.walked("c1"))
	}
	// Stale: still the kept figure at once, and one refresh queued.
	clock = clock.Add(2 * time.Minute)
	if got, _ := u.Get("c1"); got.Bytes != 100 {
		t.Errorf("Get(c1) when stale = %+v, want the kept figure until refreshed", got)
	}
	u.Get("c1") // queued once only
	if n := len(u.queue); n != 1 {
		t.Fatalf("%d refreshes queued, want 1", n)
	}
	u.refresh(<-u.queue)
	if got, _ := u.Get("c1"); got.Bytes != 500 {
		t.Errorf("Get(c1) after refresh = %+v, want 500", got)
	}

	if _, err := u.Get("gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
	u.Forget("c1")
	if _, err := u.Get("c1"); err != nil || f.walked("c1") != 3 {
		t.Errorf("Get(c1) after Forget: %v, %d walks, want a new walk (3)", err, f.walked("c1"))
	}
	// Not asked for ten times maxAge: dropped.
	clock = clock.Add(11 * time.Minute)
	u.prune()
	if len(u.entries) != 0 {
		t.Errorf("entries after prune = %d, want 0", len(u.entries))
	}
}

// The worker refreshes what Get queued, and stops with its context.
func TestLayerUsagesRun(t *testing.T) {
	f := &fakeLayers{size: map[string]uint64{"c1": 1}, walks: map[string]int{}}
	u := newLayerUsages(f.dirOf, f.walk, time.Nanosecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Run(ctx); close(done) }()
	u.Get("c1")
	f.mu.Lock()
	f.size["c1"] = 2
	f.mu.Unlock()
	for {
		if got, _ := u.Get("c1"); got.Bytes == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}

func TestWalkLayer(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 3000), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	got, err := walkLayer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Bytes < 3000 || got.Inodes < 2 {
		t.Errorf("walkLayer() = %+v, want at least 3000 bytes and 2 inodes", got)
	}
}
