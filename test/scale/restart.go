package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	// pollInterval is how often a restarted daemon is asked for its list.
	pollInterval = 10 * time.Millisecond
	// exitTimeout and upTimeout bound a daemon's shutdown and its start.
	exitTimeout = time.Minute
	upTimeout   = 5 * time.Minute
	// settleTime passes between a restart's full list and the next
	// signal. A daemon is stopped or killed in its steady state, not while
	// it still finishes the work of its start (crispd's startup reconcile
	// runs for about half a second at 500 containers, and its runtime
	// children outlive a kill -9 and take a core from the next start).
	settleTime = 2 * time.Second
)

// daemon is the runtime's daemon process, which the restart phase stops
// with a signal and starts again.
type daemon interface {
	// pid is the daemon's current process id.
	pid() (int, error)
	// start starts the daemon again once it has exited; it need not wait
	// until the daemon answers.
	start(ctx context.Context) error
}

// shellDaemon is a daemon known by its pid file and started again by a
// shell command (-daemon-pid-file, -start-cmd).
type shellDaemon struct {
	pidFile  string
	startCmd string
}

func (s *shellDaemon) pid() (int, error) {
	b, err := os.ReadFile(s.pidFile)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file %s: no pid in %q", s.pidFile, b)
	}
	return pid, nil
}

func (s *shellDaemon) start(ctx context.Context) error {
	if s.startCmd == "" {
		return errors.New("no -start-cmd to start the daemon again")
	}
	// Output straight to our stderr (a file, not a pipe), so that a daemon
	// the command puts in the background does not hold Run until it exits.
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", s.startCmd)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("start command %q: %w", s.startCmd, err)
	}
	return nil
}

// exited reports whether pid is gone or a zombie, from /proc/<pid>/stat.
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	return procState(b) == 'Z' || procState(b) == 'X'
}

// procState is the state field of a /proc/<pid>/stat line, which follows
// the command name in parentheses (which may itself hold parentheses).
func procState(stat []byte) byte {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return 0
	}
	return stat[i+2]
}

// waitExit polls until pid has exited.
func waitExit(ctx context.Context, pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !exited(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d still runs %v after the signal", pid, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// restarts stops the daemon with SIGTERM, then with SIGKILL, each time
// starting it again and timing it until a ListContainers shows every
// populated container running.
func (b *bench) restarts(ctx context.Context) error {
	if b.d == nil {
		b.rep.note("restart phase skipped: no -daemon-pid-file")
		return nil
	}
	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(settleTime):
			}
		}
		r, err := b.restartOnce(ctx, sig)
		if err != nil {
			return fmt.Errorf("%v: %w", sig, err)
		}
		b.rep.Restarts = append(b.rep.Restarts, r)
	}
	return b.redial()
}

func (b *bench) restartOnce(ctx context.Context, sig syscall.Signal) (Restart, error) {
	want := len(b.podIDs) * b.cfg.containers
	pid, err := b.d.pid()
	if err != nil {
		return Restart{}, err
	}
	r := Restart{Signal: signalName(sig)}
	t0 := time.Now()
	if err := syscall.Kill(pid, sig); err != nil {
		return r, fmt.Errorf("signal pid %d: %w", pid, err)
	}
	if err := waitExit(ctx, pid, exitTimeout); err != nil {
		return r, err
	}
	r.ShutdownMs = ms(time.Since(t0))
	t1 := time.Now()
	if err := b.d.start(ctx); err != nil {
		return r, err
	}
	var lastErr error
	for {
		r.Polls++
		n, err := b.probe(ctx)
		now := time.Now()
		if err == nil && r.FirstAnswerMs == 0 {
			r.FirstAnswerMs = ms(now.Sub(t1))
		}
		if err == nil && n >= want {
			r.FullListMs, r.TotalMs = ms(now.Sub(t1)), ms(now.Sub(t0))
			return r, nil
		}
		if err != nil {
			lastErr = err
		} else {
			lastErr = fmt.Errorf("%d of %d containers running", n, want)
		}
		if now.Sub(t1) > upTimeout {
			return r, fmt.Errorf("no full list %v after the start: %w", upTimeout, lastErr)
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// probe asks for every container on a fresh connection (the client's
// reconnect backoff must not delay the answer) and counts the populated
// ones that run.
func (b *bench) probe(ctx context.Context) (int, error) {
	conn, err := dial(b.cfg.endpoint)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := runtimeapi.NewRuntimeServiceClient(conn).ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return 0, err
	}
	return runningOf(resp.Containers, b.cfg.namespace, setPopulate), nil
}

func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGKILL:
		return "SIGKILL (kill -9)"
	}
	return sig.String()
}

// memory measures the daemon and its monitors.
func (b *bench) memory(_ context.Context) error {
	pid := 0
	if b.d != nil {
		p, err := b.d.pid()
		if err != nil {
			return err
		}
		pid = p
	}
	if pid == 0 && b.monitors == nil {
		b.rep.note("memory phase skipped: no -daemon-pid-file and no -monitor-pattern")
		return nil
	}
	m, err := measureMemory(pid, b.monitors)
	if err != nil {
		return err
	}
	b.rep.Memory = m
	return nil
}
