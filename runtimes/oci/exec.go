package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

const (
	// MaxExecOutput caps ExecSync's stdout and stderr together; the rest
	// is read and dropped. It keeps the reply within the 16 MiB gRPC
	// message cap of kubelet and crispd, with room for the envelope.
	MaxExecOutput = 16<<20 - 4<<10
	// execWaitDelay bounds how long ExecSync waits, after the process
	// ends or its timeout passes, for the runtime to exit and for pipes
	// held open by leftover children.
	execWaitDelay = 2 * time.Second
	// Exit statuses of the runtime itself when exec fails before the
	// process runs (runc 1.1: 255, runsc: 128).
	runcExecFailed  = 255
	runscExecFailed = 128
)

// ExecSync runs process p in the running container id, directly through
// the runtime (`runc exec`, not conmon), and returns its stdout, stderr
// (together capped at MaxExecOutput, first come first kept; the exit code
// is kept whatever was dropped) and exit code. A zero timeout means none.
//
// When the timeout passes, ExecSync kills the process (runc: its host pid;
// runsc: `runsc kill --pid` inside the sandbox; children it started are
// left to the container) and returns the output so far with an error
// wrapping context.DeadlineExceeded. If ctx ends, it does
// the same and returns ctx's error. It returns an error wrapping
// ErrNotFound or ErrNotRunning if the container is unknown or not running.
// p.Terminal must be false; an empty p.Cwd means "/". Safe for concurrent
// use.
//
// When the runtime itself cannot start the process in a running container
// (say, the command is not found: nothing sets PATH unless p.Env does),
// the runtime's own status (runc 255, runsc 128) comes back as the exit
// code, with its message in stderr, and err is nil, as a failed command.
func (r *Runtime) ExecSync(ctx context.Context, id string, p specs.Process, timeout time.Duration) (stdout, stderr []byte, exitCode int, err error) {
	start := time.Now()
	if p.Terminal {
		return nil, nil, -1, fmt.Errorf("exec in %s: a terminal needs a streaming exec", id)
	}
	if len(p.Args) == 0 {
		return nil, nil, -1, fmt.Errorf("exec in %s: no command", id)
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	if err := r.requireRunning(ctx, id); err != nil {
		return nil, nil, -1, fmt.Errorf("exec in %s: %w", id, err)
	}

	dir, err := os.MkdirTemp("", "crisp-exec-")
	if err != nil {
		return nil, nil, -1, fmt.Errorf("exec in %s: %w", id, err)
	}
	defer os.RemoveAll(dir)
	procPath, pidPath := filepath.Join(dir, "process.json"), filepath.Join(dir, "pid")
	data, err := json.Marshal(p)
	if err == nil {
		err = os.WriteFile(procPath, data, 0o600)
	}
	if err != nil {
		return nil, nil, -1, fmt.Errorf("exec in %s: %w", id, err)
	}

	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	args := []string{"exec", "--process", procPath}
	if r.isRunsc() {
		args = append(args, "--internal-pid-file", pidPath) // pid inside the sandbox
	} else {
		args = append(args, "--pid-file", pidPath) // host pid
	}
	cmd := r.command(runCtx, append(args, id)...)
	budget := &outputBudget{left: MaxExecOutput}
	outBuf, errBuf := &cappedBuffer{budget: budget}, &cappedBuffer{budget: budget}
	cmd.Stdout, cmd.Stderr = outBuf, errBuf
	// Killing `runc exec` would leave the process running in the
	// container, so kill the process and let the runtime reap it and
	// exit. Were runc exec killed too, the process would become a zombie
	// of PID 1, and the container's pid namespace (so conmon's exit
	// report) would wait for PID 1 to reap it: a second, here. os/exec
	// kills the runtime only if it is still there after WaitDelay.
	cmd.Cancel = func() error {
		r.killExecProcess(id, pidPath)
		return nil
	}
	cmd.WaitDelay = execWaitDelay
	runErr := cmd.Run()
	stdout, stderr = outBuf.Bytes(), errBuf.Bytes()
	r.log.Debug("exec sync", slog.String(logkey.Container, id), slog.Duration(logkey.Took, time.Since(start)), slog.Any(logkey.Err, runErr))

	if err := runCtx.Err(); err != nil {
		if ctx.Err() == nil {
			return stdout, stderr, -1, fmt.Errorf("exec in %s: timed out after %v: %w", id, timeout, err)
		}
		return stdout, stderr, -1, fmt.Errorf("exec in %s: %w", id, ctx.Err())
	}
	var ee *exec.ExitError
	if !errors.As(runErr, &ee) {
		if runErr != nil {
			return stdout, stderr, -1, fmt.Errorf("exec in %s: %w", id, runErr)
		}
		return stdout, stderr, 0, nil
	}
	code := ee.ExitCode()
	if code == runcExecFailed && !r.isRunsc() || code == runscExecFailed && r.isRunsc() {
		// The runtime's own failure status, or the process's? Only a
		// container that is no longer running tells them apart safely.
		if err := r.requireRunning(ctx, id); err != nil {
			return stdout, stderr, -1, fmt.Errorf("exec in %s: %w", id, err)
		}
	}
	return stdout, stderr, code, nil
}

// requireRunning returns nil for a running container, else an error
// wrapping ErrNotFound or ErrNotRunning.
func (r *Runtime) requireRunning(ctx context.Context, id string) error {
	st, err := r.State(ctx, id)
	if err != nil {
		return err
	}
	if st.Status != "running" {
		return fmt.Errorf("container is %s: %w", st.Status, ErrNotRunning)
	}
	return nil
}

// killExecProcess SIGKILLs the process `exec` started, if its pid file
// is there yet. runc writes the host pid, which stays ours until runc exec
// reaps it; runsc writes the pid inside the sandbox.
func (r *Runtime) killExecProcess(id, pidPath string) {
	var pid int
	// The runtime writes the file right after it starts the process.
	if !pollUntil(time.Second, func() bool {
		var err error
		pid, err = readPidFile(pidPath)
		return err == nil
	}) {
		r.log.Warn("timed-out exec has no pid file yet", slog.String(logkey.Container, id))
		return
	}
	if !r.isRunsc() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := r.run(ctx, nil, "kill", "--pid", strconv.Itoa(pid), id, strconv.Itoa(int(syscall.SIGKILL)))
	if err != nil {
		r.log.Warn("kill timed-out exec", slog.String(logkey.Container, id), slog.Any(logkey.Err, err))
	}
}

// pollUntil calls cond every 10 ms until it returns true (then true) or
// d passes (then false).
func pollUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// outputBudget is what stdout and stderr may still keep between them.
type outputBudget struct {
	mu   sync.Mutex
	left int
}

// take reserves up to n bytes of the budget and returns how many it got.
func (b *outputBudget) take(n int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n = min(n, b.left)
	b.left -= n
	return n
}

// cappedBuffer keeps what its share of a budget allows and drops the
// rest, so a chatty process can neither block nor exhaust memory. os/exec
// writes to it from one goroutine per stream.
type cappedBuffer struct {
	buf    []byte
	budget *outputBudget
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if n := b.budget.take(len(p)); n > 0 {
		b.buf = append(b.buf, p[:n]...)
	}
	return len(p), nil
}

// Bytes returns the kept output; call it only after the command is done.
func (b *cappedBuffer) Bytes() []byte { return b.buf }
