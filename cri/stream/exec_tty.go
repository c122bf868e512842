package stream

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// runTTY runs c on a pseudo-terminal of ours. runc (and runsc) only hand
// the container's terminal to a --console-socket when they detach, and a
// detached process's exit status goes to its reaper, not to us. Attached,
// the runtime needs a terminal on its own stdio: it copies between that
// and the container's terminal, and resizes the container's on SIGWINCH.
func (s *Server) runTTY(c *exec.Cmd, in io.Reader, out io.Writer, size *remotecommand.TerminalSize, resize <-chan remotecommand.TerminalSize) error {
	master, slave, err := openPty()
	if err != nil {
		return err
	}
	defer master.Close()
	// The runtime copies our terminal's size to the container's when it
	// starts, and on SIGWINCH.
	if size != nil {
		if err := setWinsize(master, size.Height, size.Width); err != nil {
			return err
		}
	}
	c.Stdin, c.Stdout = slave, slave
	runtimeErr := &cappedBuffer{max: maxRuntimeStderr}
	c.Stderr = runtimeErr // the runtime's own messages; the process writes to the terminal
	err = c.Start()
	slave.Close()
	if err != nil {
		return err
	}

	done := make(chan struct{})
	defer close(done)
	if resize != nil {
		s.wg.Go(func() { resizeLoop(done, resize, master, c.Process) })
	}
	if in != nil {
		s.wg.Go(func() { _, _ = io.Copy(master, in) })
	}
	if out == nil {
		out = io.Discard
	}
	copied := make(chan struct{})
	s.wg.Go(func() {
		defer close(copied)
		_, _ = io.Copy(out, ptyReader{master})
	})

	err = c.Wait()
	// The runtime held the only other end; what it wrote is still
	// buffered. Read it out, but do not wait for ever.
	select {
	case <-copied:
	case <-time.After(execWaitDelay):
		master.Close()
		<-copied
	}
	if err != nil && runtimeErr.Len() > 0 && !exitedNormally(err) {
		// The runtime failed (or the process was signalled and the
		// runtime complained): an error with its message, which the
		// client would not see otherwise, rather than an exit code.
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(runtimeErr.String()))
	}
	return err
}

// resizeLoop applies the client's terminal sizes until done is closed or
// resize ends.
func resizeLoop(done <-chan struct{}, resize <-chan remotecommand.TerminalSize, master *os.File, runtime *os.Process) {
	for {
		select {
		case <-done:
			return
		case size, ok := <-resize:
			if !ok {
				return
			}
			if size.Width == 0 || size.Height == 0 {
				continue
			}
			if err := setWinsize(master, size.Height, size.Width); err != nil {
				return
			}
			// The runtime copies the new size to the container's
			// terminal when it gets SIGWINCH.
			_ = runtime.Signal(syscall.SIGWINCH)
		}
	}
}
