package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// bridgeExitWait is how long a bridge may take to exit by itself once its
// forward is over (its stdin and stdout closed) before it is killed.
const bridgeExitWait = time.Second

// forwardThroughBridge forwards stream to localhost:port of a pod whose
// network stack runs inside its sandbox (gVisor's netstack), where nothing
// on the host can dial it: containerd's proposal for sandboxed runtimes
// (issue 6638). It runs the bridge process of t (see BridgeStdio) inside
// the sandbox with `<runtime> exec`, and splices stream to the bridge's
// stdin and stdout. A bridge that exits with a failure (the port refused
// the connection, the runtime could not exec) is an error carrying what
// it printed on stderr.
func (s *Server) forwardThroughBridge(ctx context.Context, t ExecTarget, port int, stream io.ReadWriter, log *slog.Logger) error {
	dir, err := os.MkdirTemp("", "crisp-portforward-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	procPath, pidPath := filepath.Join(dir, "process.json"), filepath.Join(dir, "pid")
	cmd := append(slices.Clone(t.Process.Args), strconv.Itoa(port))
	if err := writeProcess(procPath, t, cmd, false, nil); err != nil {
		return err
	}
	args := append(slices.Clone(t.GlobalArgs), "exec", "--process", procPath, "--pid-file", pidPath, t.ContainerID)
	c := exec.Command(t.RuntimePath, args...) // not CommandContext: it is ended below, gently first
	c.Env = envWithout(os.Environ(), "NOTIFY_SOCKET")
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	c.WaitDelay = execWaitDelay
	stderr := &cappedBuffer{max: maxRuntimeStderr}
	c.Stderr = stderr
	pod, err := startBridge(c)
	if err != nil {
		return fmt.Errorf("bridge in container %s: %w", t.ContainerID, err)
	}
	exited := make(chan error, 1)
	s.wg.Go(func() { exited <- c.Wait() })
	log.Debug("port forward started", slog.String("to", "bridge in container "+t.ContainerID))

	err = splice(ctx, pod, stream, s.wg.Go)
	// Its stdin at EOF and its stdout gone, the bridge ends by itself
	// (BridgeStdio); only one that lingers is killed. Under runsc that
	// kills `runsc exec`, and the bridge inside ends within its linger.
	pod.Close()
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-time.After(bridgeExitWait):
		_ = killExec(c.Process, pidPath)
		<-exited
		return err // cut off: its status says nothing
	}
	if err != nil {
		return err
	}
	if waitErr != nil {
		msg := strings.TrimSpace(stderr.String())
		var ee *exec.ExitError
		if errors.As(waitErr, &ee) && ee.Exited() {
			return fmt.Errorf("bridge in container %s exited with status %d: %s", t.ContainerID, ee.ExitCode(), msg)
		}
		return fmt.Errorf("bridge in container %s: %w: %s", t.ContainerID, waitErr, msg)
	}
	return nil
}

// startBridge starts c with pipes for stdin and stdout and returns their
// other ends as the pod's end of the forward.
func startBridge(c *exec.Cmd) (bridgePipes, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return bridgePipes{}, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return bridgePipes{}, err
	}
	c.Stdin, c.Stdout = inR, outW
	err = c.Start()
	inR.Close() // the runtime has its own copies
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return bridgePipes{}, err
	}
	return bridgePipes{in: inW, out: outR}, nil
}

// bridgePipes is the pod's end of a forward through a bridge process:
// what is written goes to its stdin, what is read comes from its stdout.
type bridgePipes struct {
	in  *os.File
	out *os.File
}

func (b bridgePipes) Read(p []byte) (int, error)        { return b.out.Read(p) }
func (b bridgePipes) Write(p []byte) (int, error)       { return b.in.Write(p) }
func (b bridgePipes) CloseWrite() error                 { return b.in.Close() }
func (b bridgePipes) SetReadDeadline(t time.Time) error { return b.out.SetReadDeadline(t) }
func (b bridgePipes) Close() error                      { b.in.Close(); return b.out.Close() }
