package network

import (
	"context"
	"log/slog"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// settle is how long the config directory must be quiet before Watch
// reloads: a DaemonSet that writes a file in several writes is read once,
// whole, rather than skipped half-written and then read again.
const settle = 100 * time.Millisecond

// Watch reloads the network whenever the config directory changes, until
// ctx is done. It returns at once when there is no config directory, and
// an error only when the directory cannot be watched at all.
func (m *Manager) Watch(ctx context.Context) error {
	if m.confDir == "" {
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Add(m.confDir); err != nil {
		return err
	}
	// A file written between New's load and Add raised no event.
	m.Reload()
	var quiet <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			m.log.Debug("cni config directory changed", slog.String("file", ev.Name), slog.String("op", ev.Op.String()))
			quiet = time.After(settle)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// An overflowed queue lost events: reload to be sure.
			m.log.Warn("watching the cni config directory", slog.String("dir", m.confDir), slog.Any(logkey.Err, err))
			quiet = time.After(settle)
		case <-quiet:
			quiet = nil
			m.Reload()
		}
	}
}
