package oci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/crisp-cri/crisp/runtimes/layout"
)

// ReadExit reads the exit code a container's monitor wrote: its exit file,
// else the copy in its bundle (the persist dir). ok is false, with a nil
// error, when neither exists yet (the container has not exited, or the
// monitor died without writing one). oomKilled reports whether the
// monitor left an OOM marker. An unreadable or malformed file is an
// error. It only reads files, so it is safe for concurrent use.
func ReadExit(files layout.Container) (code int32, oomKilled bool, ok bool, err error) {
	id := files.ID
	if err := layout.CheckID(id); err != nil {
		return 0, false, false, fmt.Errorf("read exit: %w", err)
	}
	for _, p := range []string{files.ExitFile, files.PersistExitFile()} {
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, false, false, fmt.Errorf("read exit of %s: %w", id, err)
		}
		code, ok, err = parseExitCode(data)
		if err != nil {
			return 0, false, false, fmt.Errorf("read exit of %s: %s: %w", id, p, err)
		}
		if ok {
			break
		}
	}
	if !ok {
		return 0, false, false, nil
	}
	_, err = os.Stat(files.OOMFile())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, false, false, fmt.Errorf("read exit of %s: %w", id, err)
	}
	return code, err == nil, true, nil
}

// parseExitCode parses conmon's exit file: a decimal number. An empty
// file is not written yet.
func parseExitCode(data []byte) (int32, bool, error) {
	s := strings.TrimSpace(string(data))
	if s == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, false, fmt.Errorf("not an exit code: %q", s)
	}
	return int32(n), true, nil
}

// WatchExits reports the ids of containers whose exit file appears in dir
// (conmon's --exit-dir), starting with the files already there; it
// creates dir if needed. Each id is sent once per appearance of its file:
// removing the file and writing it again reports the id again. Names that
// look like conmon's temporary files (<id>.XXXXXX, six letters or digits),
// dot files and files that do not yet hold an exit code are not reported.
//
// When inotify drops events, WatchExits rescans dir, so nothing is lost.
// The channel is closed once ctx ends, or early if dir itself is removed or
// the watcher fails; callers should treat an early close as an error and
// call WatchExits again. Stopping is always by cancelling ctx, and the
// goroutine behind the channel exits soon after, even if nobody reads.
func WatchExits(ctx context.Context, dir string) (<-chan string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("watch exits: %w", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch exits: %w", err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch exits in %s: %w", dir, err)
	}
	out := make(chan string, 64)
	go func() {
		defer close(out)
		defer w.Close()
		ew := exitWatch{ctx: ctx, dir: dir, out: out, seen: make(map[string]bool)}
		ew.loop(w)
	}()
	return out, nil
}

type exitWatch struct {
	ctx  context.Context
	dir  string
	out  chan<- string
	seen map[string]bool // ids sent whose file has not gone away since
}

func (ew *exitWatch) loop(w *fsnotify.Watcher) {
	// The watch is in place before this scan, so no file is missed.
	if !ew.scan() {
		return
	}
	for {
		select {
		case <-ew.ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if filepath.Clean(ev.Name) == filepath.Clean(ew.dir) {
				if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
					return
				}
				continue
			}
			name := filepath.Base(ev.Name)
			switch {
			case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
				delete(ew.seen, name)
			case ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write):
				if !ew.report(name) {
					return
				}
			}
		case _, ok := <-w.Errors:
			if !ok || !ew.scan() {
				return
			}
		}
	}
}

// scan reports every exit file in dir; false means ctx ended.
func (ew *exitWatch) scan() bool {
	entries, err := os.ReadDir(ew.dir)
	if err != nil {
		return ew.ctx.Err() == nil
	}
	for _, e := range entries {
		if !ew.report(e.Name()) {
			return false
		}
	}
	return true
}

// report sends name if it is a complete exit file not yet sent; false
// means ctx ended.
func (ew *exitWatch) report(name string) bool {
	if ew.seen[name] || !isExitFileName(name) {
		return true
	}
	data, err := os.ReadFile(filepath.Join(ew.dir, name))
	if err != nil {
		return true
	}
	if _, ok, err := parseExitCode(data); !ok || err != nil {
		return true
	}
	select {
	case ew.out <- name:
		ew.seen[name] = true
		return true
	case <-ew.ctx.Done():
		return false
	}
}

// isExitFileName rejects dot files and glib's g_file_set_contents
// temporaries, "<name>.XXXXXX", through which conmon writes exit files.
func isExitFileName(name string) bool {
	if name == "" || strings.HasPrefix(name, ".") {
		return false
	}
	i := strings.LastIndexByte(name, '.')
	if i < 0 || len(name)-i-1 != 6 {
		return true
	}
	for _, r := range name[i+1:] {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return true
		}
	}
	return false
}

// ReopenLog asks a container's monitor to reopen its log file, as after
// log rotation: it writes "2 0 0\n" to the monitor's control FIFO. If
// logPath is not empty, it then waits, until ctx ends, for the monitor to
// have created logPath again. It returns an error wrapping ErrNotFound
// when there is no control FIFO and ErrNotRunning when no monitor reads
// it (the monitor has exited). It is safe for concurrent use.
func ReopenLog(ctx context.Context, files layout.Container, logPath string) error {
	ctl := files.CtlFifo()
	// Non-blocking: opening a FIFO nobody reads would otherwise hang.
	f, err := os.OpenFile(ctl, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("reopen log: no %s: %w", ctl, ErrNotFound)
	case errors.Is(err, syscall.ENXIO):
		return fmt.Errorf("reopen log: no conmon reads %s: %w", ctl, ErrNotRunning)
	case err != nil:
		return fmt.Errorf("reopen log: %w", err)
	}
	_, err = f.Write([]byte("2 0 0\n"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("reopen log: write %s: %w", ctl, err)
	}
	if logPath == "" {
		return nil
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(logPath); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("reopen log: wait for %s: %w", logPath, ctx.Err())
		case <-tick.C:
		}
	}
}
