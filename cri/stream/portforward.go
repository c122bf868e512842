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

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

const (
	// dialTimeout bounds connecting to the port inside the pod.
	dialTimeout = 10 * time.Second
	// portForwardLinger is how long the pod's side may stay silent once
	// the client's side has ended (closed, or the client has gone)
	// before the forward ends: socat's -t, and containerd's 1 s. Every
	// read that brings data restarts it.
	portForwardLinger = 5 * time.Second
)

// portForward connects stream to localhost:port inside the pod's network
// namespace: IPv4 first, then IPv6. It returns when the pod's side closes
// the connection, when the pod has been silent for portForwardLinger after
// the client's side ended, or when the server stops. The copy towards the
// pod ends when the client closes its side or the connection (a Read on
// stream has no deadline).
func (s *Server) portForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) (retErr error) {
	ctx, end, err := s.session(ctx)
	if err != nil {
		return err
	}
	defer end()
	if port <= 0 || port > 65535 {
		return fmt.Errorf("port forward to pod %s: invalid port %d", podSandboxID, port)
	}
	start := time.Now()
	log := s.log.With(slog.String(logkey.Pod, podSandboxID), slog.Int("port", int(port)))
	defer func() {
		log.Debug("port forward ended", slog.Duration(logkey.Took, time.Since(start)), slog.Any(logkey.Err, retErr))
	}()

	path, err := s.c.NetNS(ctx, podSandboxID)
	if err != nil {
		return err
	}
	conn, err := dialInNetNS(ctx, path, int(port))
	if err != nil {
		return fmt.Errorf("port forward to pod %s: %w", podSandboxID, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	log.Debug("port forward started", slog.String("to", conn.RemoteAddr().String()))

	fromPod := &lingerReader{conn: conn, clientDone: make(chan struct{})}
	s.wg.Go(func() {
		// Client to pod; at the client's EOF, half-close so that the
		// pod's server sees the end of its request.
		if _, err := io.Copy(conn, stream); err == nil {
			_ = conn.CloseWrite()
		}
		close(fromPod.clientDone)
		_ = conn.SetReadDeadline(time.Now().Add(portForwardLinger))
	})
	_, err = io.Copy(stream, fromPod)
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("port forward to pod %s: %w", podSandboxID, cerr)
	}
	if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("port forward to pod %s: %w", podSandboxID, err)
	}
	return nil
}

// lingerReader reads the pod's side of a forward; once the client's side
// has ended, each Read may wait at most portForwardLinger.
type lingerReader struct {
	conn       *net.TCPConn
	clientDone chan struct{}
}

func (r *lingerReader) Read(p []byte) (int, error) {
	select {
	case <-r.clientDone:
		_ = r.conn.SetReadDeadline(time.Now().Add(portForwardLinger))
	default:
	}
	return r.conn.Read(p)
}

// dialInNetNS connects to port on the loopback interface of the network
// namespace at path. Only the socket is created inside it: the thread
// goes back to the host's namespace (or, should that fail, dies with the
// namespace still set) before the connection is used.
func dialInNetNS(ctx context.Context, path string, port int) (*net.TCPConn, error) {
	var conn net.Conn
	err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		d := net.Dialer{Timeout: dialTimeout}
		var err4, err6 error
		p := strconv.Itoa(port)
		if conn, err4 = d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p)); err4 == nil {
			return nil
		}
		if conn, err6 = d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p)); err6 == nil {
			return nil
		}
		return errors.Join(err4, err6)
	})
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", path, err)
	}
	return conn.(*net.TCPConn), nil
}
