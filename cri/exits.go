package cri

import (
	"errors"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/crisp-cri/crisp/runtimes/host"
)

// exitNotifier wakes the callers that wait for a container's exit (Stop)
// as soon as the exit watcher sees the container's exit file, instead of
// letting them poll.
type exitNotifier struct {
	mu      sync.Mutex
	waiters map[string]map[chan struct{}]bool
}

// wait returns a channel that gets a value when id's exit file appears, and
// the function that stops waiting.
func (n *exitNotifier) wait(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.waiters == nil {
		n.waiters = map[string]map[chan struct{}]bool{}
	}
	if n.waiters[id] == nil {
		n.waiters[id] = map[chan struct{}]bool{}
	}
	n.waiters[id][ch] = true
	return ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		delete(n.waiters[id], ch)
		if len(n.waiters[id]) == 0 {
			delete(n.waiters, id)
		}
	}
}

// notify wakes id's waiters; it never blocks.
func (n *exitNotifier) notify(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.waiters[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// signalInit sends sig to a container's init process directly, which saves
// running the OCI runtime: through a pidfd, after checking the pid still
// has the start time recorded when the container started, so a recycled
// pid is never signalled. ok is false when it could not tell (the caller
// then asks the runtime); gone is true when the process has exited.
func signalInit(pid int, started uint64, sig syscall.Signal) (gone, ok bool) {
	if pid <= 0 || started == 0 {
		return false, false
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return true, true
	}
	if err != nil {
		return false, false
	}
	defer unix.Close(fd)
	if host.ProcStart(pid) != started {
		return true, true // the pid now belongs to another process
	}
	err = unix.PidfdSendSignal(fd, sig, nil, 0)
	if errors.Is(err, unix.ESRCH) {
		return true, true
	}
	return false, err == nil
}
