package storage

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.podman.io/image/v5/types"

	"github.com/crisp-cri/crisp/test/images"
	"github.com/crisp-cri/crisp/test/registry"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Blobs the copy reports on: two of 100 bytes, one of unknown size.
var (
	blobA       = types.BlobInfo{Digest: "sha256:aaaa", Size: 100}
	blobB       = types.BlobInfo{Digest: "sha256:bbbb", Size: 100}
	blobUnsized = types.BlobInfo{Digest: "sha256:cccc", Size: -1}
)

func report(ev types.ProgressEvent, blob types.BlobInfo, offset uint64) types.ProgressProperties {
	return types.ProgressProperties{Event: ev, Artifact: blob, Offset: offset}
}

// The stall clock runs only while the copy waits on the registry.
func TestPullWatchWaitingOnRegistry(t *testing.T) {
	a, b := blobA, blobB
	tests := []struct {
		name    string
		reports []types.ProgressProperties
		want    bool
	}{
		{"manifest phase", nil, true},
		{"blob started", []types.ProgressProperties{report(types.ProgressEventNewArtifact, a, 0)}, true},
		{"blob half read", []types.ProgressProperties{report(types.ProgressEventNewArtifact, a, 0), report(types.ProgressEventRead, a, 50)}, true},
		{"blob read whole, unpacking", []types.ProgressProperties{report(types.ProgressEventNewArtifact, a, 0), report(types.ProgressEventRead, a, 100)}, false},
		{"size unknown", []types.ProgressProperties{report(types.ProgressEventNewArtifact, blobUnsized, 0), report(types.ProgressEventRead, blobUnsized, 100)}, true},
		{"one whole, one half", []types.ProgressProperties{
			report(types.ProgressEventNewArtifact, a, 0), report(types.ProgressEventNewArtifact, b, 0),
			report(types.ProgressEventRead, a, 100), report(types.ProgressEventRead, b, 10)}, true},
		{"done", []types.ProgressProperties{report(types.ProgressEventNewArtifact, a, 0), report(types.ProgressEventDone, a, 100)}, false},
		{"skipped", []types.ProgressProperties{report(types.ProgressEventNewArtifact, a, 0), report(types.ProgressEventSkipped, a, 0)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newPullWatch(quietLog(), time.Minute, nil)
			for _, p := range tt.reports {
				w.observe(p)
			}
			if got := w.waitingOnRegistry(); got != tt.want {
				t.Errorf("waitingOnRegistry() after %d reports = %v, want %v", len(tt.reports), got, tt.want)
			}
		})
	}
}

// A watch with nothing arriving cancels with a cause naming the blob it
// waits for; one that is stopped first never cancels.
func TestPullWatchCancels(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	w := newPullWatch(quietLog(), 20*time.Millisecond, cancel)
	progress, stop := w.start()
	progress <- report(types.ProgressEventNewArtifact, blobA, 0)
	progress <- report(types.ProgressEventRead, blobA, 40)
	<-ctx.Done()
	stop()
	cause := context.Cause(ctx)
	if !errors.Is(cause, ErrPullStalled) || !strings.Contains(cause.Error(), "sha256:aaaa, 40 of 100 bytes") || !strings.Contains(cause.Error(), "20ms") {
		t.Errorf("cause = %v, want ErrPullStalled naming the blob, its progress and the timeout", cause)
	}

	// With no timeout, the watch only logs.
	w = newPullWatch(quietLog(), 0, func(error) { t.Error("a watch without timeout cancelled") })
	progress, stop = w.start()
	progress <- report(types.ProgressEventNewArtifact, blobA, 0)
	stop()
}

// stallImage has a 1 KiB layer, which arrives whole before the registry
// stalls (at 4 KiB), and a 256 KiB one, which does not.
func stallImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := images.Scratch()
	if err == nil {
		img, err = images.WithPayload(img, 1<<10, 6)
	}
	if err == nil {
		img, err = images.WithPayload(img, 256<<10, 7)
	}
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// A registry that stops sending mid-blob fails the pull with
// ErrPullStalled once the progress timeout passes, leaves no image, layer
// or temp file, and the registry sees the client go.
func TestPullStalls(t *testing.T) {
	reg := registry.Start(t, registry.WithStall(4096))
	reg.Push(t, "crisp-test/stall:1", stallImage(t))
	s := openStore(t, Config{PullProgressTimeout: 500 * time.Millisecond})
	ref := reg.Ref("crisp-test/stall:1")

	_, err := s.Pull(context.Background(), ref, nil)
	if !errors.Is(err, ErrPullStalled) || !strings.Contains(err.Error(), ref) || !strings.Contains(err.Error(), "500ms") {
		t.Fatalf("Pull(stalling registry) = %v, want ErrPullStalled naming %s and 500ms", err, ref)
	}
	t.Logf("stalled pull: %v", err)
	if imgs, _ := s.List(context.Background()); len(imgs) != 0 {
		t.Errorf("images after stalled pull: %d, want 0", len(imgs))
	}
	if n := layerCount(t, s); n != 0 {
		t.Errorf("layers after stalled pull: %d, want 0", n)
	}
	if left, _ := os.ReadDir(s.pullTmp()); len(left) != 0 {
		t.Errorf("temp files after stalled pull: %v", left)
	}
	waitAbandoned(t, reg)
	waitNoPullGoroutines(t)
}

// waitNoPullGoroutines waits until no goroutine runs c/image code or a
// pull's watch: a cancelled pull leaves none behind.
func waitNoPullGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var left []string
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "go.podman.io/image/") || strings.Contains(g, "(*pullWatch)") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of the pull left:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitAbandoned waits until the registry has seen the client leave every
// stalled request: the pull closed its connection.
func waitAbandoned(t *testing.T, reg *registry.Registry) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		stalled, abandoned := reg.Stalls()
		if stalled > 0 && abandoned == stalled {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry stalls = %d, abandoned %d: want the client to have left every stalled request", stalled, abandoned)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A pull slower than the progress timeout, but always moving, succeeds.
func TestSlowPullIsNotStalled(t *testing.T) {
	const timeout = 300 * time.Millisecond
	reg := registry.Start(t, registry.WithThrottle(32<<10))
	img, err := images.Scratch()
	if err == nil {
		img, err = images.WithPayload(img, 48<<10, 3)
	}
	if err != nil {
		t.Fatal(err)
	}
	reg.Push(t, "crisp-test/slow:1", img)
	s := openStore(t, Config{PullProgressTimeout: timeout})
	start := time.Now()
	if _, err := s.Pull(context.Background(), reg.Ref("crisp-test/slow:1"), nil); err != nil {
		t.Fatalf("Pull(throttled registry) = %v", err)
	}
	// Only the lower bound is certain; it shows the test exercised a pull
	// longer than the timeout.
	if took := time.Since(start); took < 3*timeout {
		t.Errorf("throttled pull took %v, not past 3×%v: the test proves nothing", took, timeout)
	}
}
