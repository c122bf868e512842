package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

const (
	// execWaitDelay bounds how long an exec waits, once the runtime has
	// exited or the session was cancelled, for output still held open by
	// processes the command left behind.
	execWaitDelay = 2 * time.Second
	// maxRuntimeStderr caps what is kept of the runtime's own messages in
	// tty mode, for the error.
	maxRuntimeStderr = 4 << 10
	// initialSizeWait bounds the wait for the client's terminal size
	// before a tty exec starts.
	initialSizeWait = 200 * time.Millisecond
	// pidFileWait bounds the wait for the runtime's pid file when an
	// exec is cancelled.
	pidFileWait = time.Second
)

// ExitError is a command's non-zero exit status. It implements
// k8s.io/utils/exec.ExitError, which is how k8s.io/cri-streaming tells the
// client the exit code (it type-asserts; do not wrap it).
type ExitError struct {
	Code int
}

// Error implements error.
func (e *ExitError) Error() string { return "command exited with status " + strconv.Itoa(e.Code) }

// String returns the same text as Error.
func (e *ExitError) String() string { return e.Error() }

// Exited reports true: the process ended with a status.
func (e *ExitError) Exited() bool { return true }

// ExitStatus returns the exit code.
func (e *ExitError) ExitStatus() int { return e.Code }

// exec runs cmd in the container through `<runtime> exec` (not conmon) and
// streams its stdio. A non-zero exit comes back as *ExitError; a signalled
// process as the runtime reports it (128+signal). If the session ends
// first (the client goes away, the server stops) the process is killed.
func (s *Server) exec(ctx context.Context, containerID string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) (retErr error) {
	defer closeAll(out, errOut)
	if len(cmd) == 0 {
		return errors.New("exec: no command")
	}
	ctx, end, err := s.session(ctx)
	if err != nil {
		return err
	}
	defer end()
	start := time.Now()
	log := s.log.With(slog.String(logkey.Container, containerID))
	defer func() {
		log.Debug("exec session ended", slog.Bool("tty", tty), slog.Duration(logkey.Took, time.Since(start)), slog.Any(logkey.Err, retErr))
	}()

	t, err := s.c.ExecTarget(ctx, containerID)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "crisp-exec-")
	if err != nil {
		return fmt.Errorf("exec in %s: %w", containerID, err)
	}
	defer os.RemoveAll(dir)
	procPath, pidPath := filepath.Join(dir, "process.json"), filepath.Join(dir, "pid")
	var size *remotecommand.TerminalSize
	if tty {
		size, resize = firstSize(resize)
	}
	if err := writeProcess(procPath, t, cmd, tty, size); err != nil {
		return fmt.Errorf("exec in %s: %w", containerID, err)
	}

	args := append(append([]string(nil), t.GlobalArgs...), "exec", "--process", procPath, "--pid-file", pidPath)
	if tty {
		args = append(args, t.TTYArgs...)
	}
	c := exec.CommandContext(ctx, t.RuntimePath, append(args, t.ContainerID)...)
	c.Env = envWithout(os.Environ(), "NOTIFY_SOCKET")
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Killing the runtime would leave the process running in the
	// container: kill the process, and the runtime reaps it and exits.
	c.Cancel = func() error { return killExec(c.Process, pidPath) }
	c.WaitDelay = execWaitDelay
	log.Debug("exec session started", slog.Bool("tty", tty), slog.String("cmd", strings.Join(cmd, " ")))
	if tty {
		err = s.runTTY(c, in, out, size, resize)
	} else {
		err = s.runPipes(c, in, out, errOut)
	}
	if cerr := ctx.Err(); cerr != nil && err != nil {
		return fmt.Errorf("exec in %s: %w", containerID, cerr)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return &ExitError{Code: ee.ExitCode()}
	}
	if err != nil {
		return fmt.Errorf("exec in %s: %w", containerID, err)
	}
	return nil
}

// writeProcess writes the OCI process for cmd to path.
func writeProcess(path string, t ExecTarget, cmd []string, tty bool, size *remotecommand.TerminalSize) error {
	p := t.Process
	p.Args = cmd
	p.Terminal = tty
	p.ConsoleSize = nil
	if size != nil {
		p.ConsoleSize = &specs.Box{Height: uint(size.Height), Width: uint(size.Width)}
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	if tty && !hasEnv(p.Env, "TERM") {
		p.Env = append(append([]string(nil), p.Env...), "TERM=xterm")
	}
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// firstSize waits a little for the client's first terminal size, which
// clients send right after connecting: the runtime then sizes the
// container's terminal before the process starts, sparing programs that
// read the size once a 0x0 terminal. It returns resize, or nil if it has
// closed.
func firstSize(resize <-chan remotecommand.TerminalSize) (*remotecommand.TerminalSize, <-chan remotecommand.TerminalSize) {
	if resize == nil {
		return nil, nil
	}
	select {
	case size, ok := <-resize:
		if !ok {
			return nil, nil
		}
		if size.Width == 0 || size.Height == 0 {
			return nil, resize
		}
		return &size, resize
	case <-time.After(initialSizeWait):
		return nil, resize
	}
}

// runPipes runs c with pipes for stdio. The client's stdin is copied by a
// goroutine of its own, because it may block in Read long after the
// process has exited; it ends when the client closes stdin or the
// connection.
func (s *Server) runPipes(c *exec.Cmd, in io.Reader, out, errOut io.Writer) error {
	if out != nil {
		c.Stdout = out
	}
	if errOut != nil {
		c.Stderr = errOut
	}
	var stdinR, stdinW *os.File
	if in != nil {
		var err error
		if stdinR, stdinW, err = os.Pipe(); err != nil {
			return err
		}
		c.Stdin = stdinR
	}
	err := c.Start()
	if stdinR != nil {
		stdinR.Close() // the runtime has its own copy
	}
	if err != nil {
		if stdinW != nil {
			stdinW.Close()
		}
		return err
	}
	if stdinW != nil {
		s.wg.Go(func() {
			_, _ = io.Copy(stdinW, in)
			stdinW.Close() // EOF for the process
		})
	}
	err = c.Wait()
	if stdinW != nil {
		stdinW.Close() // the copier's next write fails and it stops
	}
	return err
}

// killExec SIGKILLs the exec'd process once the runtime has written its
// pid (the process can run, and talk, before that), else the runtime
// itself. runc writes the process's host pid; runsc writes its own pid,
// so under runsc the process stays in the sandbox.
func killExec(runtime *os.Process, pidPath string) error {
	deadline := time.Now().Add(pidFileWait)
	for {
		data, err := os.ReadFile(pidPath)
		pid, perr := strconv.Atoi(strings.TrimSpace(string(data)))
		if err == nil && perr == nil && pid > 0 {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				return nil
			}
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return runtime.Kill()
}

// exitedNormally reports whether err is an exit status below 128, the
// process's own; runtimes report their failures with 255 (runc) or 128
// (runsc), and a signalled process as 128+signal.
func exitedNormally(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.Exited() && ee.ExitCode() < 128
}

func hasEnv(env []string, name string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			return true
		}
	}
	return false
}

func envWithout(env []string, name string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// closeAll closes the non-nil writers; closing tells the client that the
// stream has ended.
func closeAll(ws ...io.WriteCloser) {
	for _, w := range ws {
		if w != nil {
			_ = w.Close()
		}
	}
}
