package storage

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"go.podman.io/image/v5/types"
)

// progressEveryRead is the copy's report interval: short enough that every
// Read of a blob is reported, so the read that completes a blob is always
// seen and the watch knows the registry's part is done. A report is one
// channel send per read, cheap beside the read itself.
const progressEveryRead = time.Nanosecond

// progressLogEvery spaces the debug log lines of one blob's progress.
const progressLogEvery = time.Second

// pullWatch follows one copy's progress reports. It logs them, and it
// cancels the copy (with a cause wrapping ErrPullStalled) when the copy
// waits on the registry and no byte has arrived for the timeout: a stalled
// connection, which would otherwise hang the pull for ever. A slow link
// that still delivers never trips it; the time spent unpacking layers
// locally does not count. It is not safe for concurrent use: one goroutine
// (run) owns it.
type pullWatch struct {
	log     *slog.Logger
	timeout time.Duration // 0: never cancel
	cancel  context.CancelCauseFunc

	began bool               // a blob has started: the manifest phase is over
	blobs map[string]*blobIO // started and not finished
}

// blobIO is what has arrived of one blob.
type blobIO struct {
	size     int64 // -1 when the manifest does not say
	got      uint64
	loggedAt time.Time
}

func newPullWatch(log *slog.Logger, timeout time.Duration, cancel context.CancelCauseFunc) *pullWatch {
	return &pullWatch{log: log, timeout: timeout, cancel: cancel, blobs: map[string]*blobIO{}}
}

// start runs the watch over a new progress channel until stop is called;
// stop closes the channel (call it only once the copy has returned) and
// waits for the watch to end.
func (w *pullWatch) start() (progress chan types.ProgressProperties, stop func()) {
	progress = make(chan types.ProgressProperties)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(progress)
	}()
	return progress, func() { close(progress); <-done }
}

func (w *pullWatch) run(progress <-chan types.ProgressProperties) {
	var fire <-chan time.Time
	var timer *time.Timer
	if w.timeout > 0 {
		timer = time.NewTimer(w.timeout)
		defer timer.Stop()
		fire = timer.C
	}
	for {
		select {
		case p, ok := <-progress:
			if !ok {
				return
			}
			w.observe(p)
			if timer == nil {
				continue
			}
			// Every report is progress. Since Go 1.23, Reset and Stop
			// leave no stale tick behind.
			if w.waitingOnRegistry() {
				timer.Reset(w.timeout)
			} else {
				timer.Stop()
			}
		case <-fire:
			err := w.stallError()
			w.log.Info("pull stalled; cancelling it", slog.Duration("progress_timeout", w.timeout), slog.String("waiting_for", w.waitingFor()))
			w.cancel(err)
			// Keep draining: the copy may report while it unwinds.
			fire = nil
		}
	}
}

// observe records one report and logs it.
func (w *pullWatch) observe(p types.ProgressProperties) {
	d := p.Artifact.Digest.String()
	switch p.Event {
	case types.ProgressEventNewArtifact:
		w.began = true
		w.blobs[d] = &blobIO{size: p.Artifact.Size}
	case types.ProgressEventRead:
		b := w.blobs[d]
		if b == nil { // a report this version of the library sends unannounced
			b = &blobIO{size: p.Artifact.Size}
			w.blobs[d] = b
		}
		b.got = p.Offset
		if time.Since(b.loggedAt) >= progressLogEvery {
			b.loggedAt = time.Now()
			w.log.Debug("pull progress", slog.String("blob", d), slog.Uint64("bytes", p.Offset), slog.Int64("size", p.Artifact.Size))
		}
	case types.ProgressEventDone:
		delete(w.blobs, d)
		w.log.Info("blob pulled", slog.String("blob", d), slog.Int64("size", p.Artifact.Size))
	case types.ProgressEventSkipped:
		delete(w.blobs, d)
		w.log.Debug("blob already stored", slog.String("blob", d))
	}
}

// waitingOnRegistry reports whether the copy now waits on the registry:
// before the first blob (the manifest, the config and any signatures are
// being fetched), or while a started blob has bytes still to come. Once
// every started blob has arrived whole, the copy is busy on this node
// (unpacking a layer, which takes a while for a big one), and that is no
// stall. A registry that sends every byte of a blob and then holds the
// response open is not caught; Content-Length ends a blob response first.
func (w *pullWatch) waitingOnRegistry() bool {
	if !w.began {
		return true
	}
	for _, b := range w.blobs {
		if b.size < 0 || b.got < uint64(b.size) {
			return true
		}
	}
	return false
}

// waitingFor says what the copy waits for, for the error and the log:
// the manifest phase, or the first unfinished blob and how much of it came.
func (w *pullWatch) waitingFor() string {
	if !w.began {
		return "the manifest or config"
	}
	var open []string
	for d, b := range w.blobs {
		if b.size < 0 || b.got < uint64(b.size) {
			open = append(open, d)
		}
	}
	if len(open) == 0 {
		return "nothing"
	}
	sort.Slice(open, func(i, j int) bool { return open[i] < open[j] })
	b := w.blobs[open[0]]
	s := fmt.Sprintf("blob %s, %d of %d bytes received", open[0], b.got, b.size)
	if len(open) > 1 {
		s += fmt.Sprintf(", and %d more blobs", len(open)-1)
	}
	return s
}

func (w *pullWatch) stallError() error {
	return fmt.Errorf("%w: the registry sent no data for %v (image_pull_progress_timeout) while the pull waited for %s",
		ErrPullStalled, w.timeout, w.waitingFor())
}
