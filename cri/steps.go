package cri

import (
	"context"
	"log/slog"
	"time"
)

// steps times the stages of one CRI call and logs them at debug level:
// where a slow call spends its time, without a profiler. A nil *steps
// records nothing.
type steps struct {
	start, last time.Time
	attrs       []slog.Attr
}

func startSteps() *steps {
	now := time.Now()
	return &steps{start: now, last: now}
}

// done ends the stage called name.
func (t *steps) done(name string) {
	if t == nil {
		return
	}
	now := time.Now()
	t.attrs = append(t.attrs, slog.Duration(name, now.Sub(t.last)))
	t.last = now
}

// log writes the stages and the total, as one debug line.
func (t *steps) log(ctx context.Context, log *slog.Logger, call string) {
	if t == nil || !log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := append(t.attrs, slog.Duration("total", time.Since(t.start)))
	log.LogAttrs(ctx, slog.LevelDebug, call+" steps", attrs...)
}
