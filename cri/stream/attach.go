package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// conmon's attach protocol: every packet conmon sends is one byte naming
// the stream, then the data; what clients send is the container's stdin,
// as is.
const (
	attachPipeStdout = 2
	attachPipeStderr = 3
	// attachReadSize holds any packet conmon sends (it sends at most
	// 8193 bytes); a shorter buffer would truncate a SEQPACKET message.
	attachReadSize = 64 << 10
	// attachWriteSize keeps each stdin packet well inside conmon's 32 KiB
	// read buffer.
	attachWriteSize = 8 << 10
	// ctlResize is conmon's control message for a terminal resize:
	// "1 <rows> <cols>\n".
	ctlResize = 1
)

// attach connects the client to the container's stdio through conmon's
// attach socket, until conmon closes it (the container has exited), the
// client goes away or detaches, or the server stops. When the client's
// stdin ends, attach ends too, unless the container has a terminal or
// closes its stdin then (stdin_once), which is when its output is worth
// waiting for.
func (s *Server) attach(ctx context.Context, containerID string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) (retErr error) {
	defer closeAll(out, errOut)
	ctx, end, err := s.session(ctx)
	if err != nil {
		return err
	}
	defer end()
	start := time.Now()
	log := s.log.With(slog.String(logkey.Container, containerID))
	defer func() {
		log.Debug("attach session ended", slog.Duration(logkey.Took, time.Since(start)), slog.Any(logkey.Err, retErr))
	}()

	t, err := s.c.AttachTarget(ctx, containerID)
	if err != nil {
		return err
	}
	conn, err := dialAttach(t.Socket)
	if err != nil {
		return fmt.Errorf("attach to %s: %w", containerID, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	log.Debug("attach session started", slog.Bool("tty", t.Tty), slog.Bool("stdin", in != nil && t.Stdin))

	done := make(chan struct{})
	defer close(done)
	if t.Tty && resize != nil {
		s.wg.Go(func() { ctlResizeLoop(done, resize, t.CtlFifo, log) })
	}
	received := make(chan error, 1)
	s.wg.Go(func() { received <- receiveAttach(conn, out, errOut) })
	stdinDone := make(chan error, 1)
	if in != nil && t.Stdin {
		// Owned by the session's connection: a Read on the client's
		// stdin ends when the client closes it or the connection.
		s.wg.Go(func() { stdinDone <- sendAttach(conn, in) })
	}

	select {
	case err := <-received:
		return attachResult(ctx, containerID, err)
	case err := <-stdinDone:
		if err == nil {
			// EOF from the client: tell conmon, which closes the
			// container's stdin if it is stdin_once.
			_ = conn.CloseWrite()
		}
		if err != nil || !(t.Tty || t.StdinOnce) || (out == nil && errOut == nil) {
			return attachResult(ctx, containerID, err)
		}
		return attachResult(ctx, containerID, <-received)
	}
}

// attachResult turns an attach's copying error into its result.
func attachResult(ctx context.Context, containerID string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("attach to %s: %w", containerID, cerr)
	}
	if err != nil {
		return fmt.Errorf("attach to %s: %w", containerID, err)
	}
	return nil
}

// dialAttach connects to conmon's attach socket through an O_PATH
// descriptor, so that a path longer than sun_path allows still works.
func dialAttach(path string) (*net.UnixConn, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	addr := &net.UnixAddr{Name: "/proc/self/fd/" + strconv.Itoa(fd), Net: "unixpacket"}
	conn, err := net.DialUnix("unixpacket", nil, addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", path, err)
	}
	return conn, nil
}

// receiveAttach copies conmon's packets to out and errOut (either may be
// nil: that stream is dropped) until conmon closes the socket, which is a
// nil error.
func receiveAttach(conn *net.UnixConn, out, errOut io.Writer) error {
	buf := make([]byte, attachReadSize)
	for {
		n, err := conn.Read(buf)
		if n > 1 {
			var dst io.Writer
			switch buf[0] {
			case attachPipeStdout:
				dst = out
			case attachPipeStderr:
				dst = errOut
			}
			if dst != nil {
				if _, werr := dst.Write(buf[1:n]); werr != nil {
					return fmt.Errorf("write to client: %w", werr)
				}
			}
		}
		if errors.Is(err, io.EOF) || err == nil && n == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// sendAttach copies the client's stdin to conmon in packets conmon reads
// whole. It returns nil at EOF.
func sendAttach(conn *net.UnixConn, in io.Reader) error {
	buf := make([]byte, attachWriteSize)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return fmt.Errorf("write to container stdin: %w", werr)
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read client stdin: %w", err)
		}
	}
}

// ctlResizeLoop writes the client's terminal sizes to conmon's control
// FIFO until done is closed or resize ends.
func ctlResizeLoop(done <-chan struct{}, resize <-chan remotecommand.TerminalSize, fifo string, log *slog.Logger) {
	var ctl *os.File
	defer func() {
		if ctl != nil {
			ctl.Close()
		}
	}()
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
			if ctl == nil {
				// Non-blocking: with no conmon reading, open fails
				// (ENXIO) instead of hanging.
				f, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
				if err != nil {
					log.Debug("attach resize", slog.Any(logkey.Err, err))
					return
				}
				ctl = f
			}
			// One write, under PIPE_BUF: atomic next to other writers.
			msg := fmt.Sprintf("%d %d %d\n", ctlResize, size.Height, size.Width)
			if _, err := ctl.WriteString(msg); err != nil {
				log.Debug("attach resize", slog.Any(logkey.Err, err))
				return
			}
		}
	}
}
