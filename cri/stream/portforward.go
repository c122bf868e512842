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

// portForward connects stream to localhost:port of the pod: inside its
// network namespace, or through a bridge process inside its sandbox (see
// PortForwardTarget). It returns when the pod's side closes the
// connection, when the pod has been silent for portForwardLinger after
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
	t, err := s.c.PortForwardTarget(ctx, podSandboxID)
	if err != nil {
		return err
	}
	via := "netns"
	if t.Bridge != nil {
		via = "bridge"
	}
	defer func() {
		log.Debug("port forward ended", slog.String("via", via), slog.Duration(logkey.Took, time.Since(start)), slog.Any(logkey.Err, retErr))
	}()
	if t.Bridge != nil {
		err = s.forwardThroughBridge(ctx, *t.Bridge, int(port), stream, log)
	} else {
		err = s.forwardInNetNS(ctx, t.NetNS, int(port), stream, log)
	}
	if err != nil {
		return fmt.Errorf("port forward to pod %s: %w", podSandboxID, err)
	}
	return nil
}

// forwardInNetNS dials localhost:port in the network namespace at path
// and splices stream to the connection.
func (s *Server) forwardInNetNS(ctx context.Context, path string, port int, stream io.ReadWriter, log *slog.Logger) error {
	conn, err := dialInNetNS(ctx, path, port)
	if err != nil {
		return err
	}
	defer conn.Close()
	log.Debug("port forward started", slog.String("to", conn.RemoteAddr().String()))
	return splice(ctx, conn, stream, s.wg.Go)
}

// podEnd is the pod's end of a forward: a TCP connection to the port, or
// the stdin and stdout of a bridge process that holds one.
type podEnd interface {
	io.ReadWriteCloser
	// CloseWrite tells the pod's side that the client has no more to say.
	CloseWrite() error
	SetReadDeadline(time.Time) error
}

// splice copies between client and pod until the pod's side ends, the
// pod has been silent for portForwardLinger after the client's side
// ended, or ctx ends (which closes pod). At the client's EOF it
// half-closes pod, so that the pod's server sees the end of its request.
// The copy towards the pod runs in a goroutine started with spawn, which
// may outlive splice until the client's side ends.
func splice(ctx context.Context, pod podEnd, client io.ReadWriter, spawn func(func())) error {
	stop := context.AfterFunc(ctx, func() { pod.Close() })
	defer stop()
	fromPod := &lingerReader{pod: pod, clientDone: make(chan struct{})}
	spawn(func() {
		if _, err := io.Copy(pod, client); err == nil {
			_ = pod.CloseWrite()
		}
		close(fromPod.clientDone)
		_ = pod.SetReadDeadline(time.Now().Add(portForwardLinger))
	})
	_, err := io.Copy(client, fromPod)
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return nil
}

// lingerReader reads the pod's side of a forward; once the client's side
// has ended, each Read may wait at most portForwardLinger.
type lingerReader struct {
	pod        podEnd
	clientDone chan struct{}
}

func (r *lingerReader) Read(p []byte) (int, error) {
	select {
	case <-r.clientDone:
		_ = r.pod.SetReadDeadline(time.Now().Add(portForwardLinger))
	default:
	}
	return r.pod.Read(p)
}

// dialInNetNS connects to port on the loopback interface of the network
// namespace at path. Only the socket is created inside it: the thread
// goes back to the host's namespace (or, should that fail, dies with the
// namespace still set) before the connection is used.
func dialInNetNS(ctx context.Context, path string, port int) (*net.TCPConn, error) {
	var conn *net.TCPConn
	err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		var err error
		conn, err = dialLoopback(ctx, port)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", path, err)
	}
	return conn, nil
}

// dialLoopback connects to port on 127.0.0.1, else on [::1].
func dialLoopback(ctx context.Context, port int) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	p := strconv.Itoa(port)
	conn, err4 := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
	if err4 == nil {
		return conn.(*net.TCPConn), nil
	}
	conn, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p))
	if err6 == nil {
		return conn.(*net.TCPConn), nil
	}
	return nil, errors.Join(err4, err6)
}

// BridgeStdio is the bridge process of a port-forward into a pod whose
// network the host cannot reach (PortForwardTarget.Bridge): it connects to
// localhost:port (IPv4, then IPv6) and splices in and out to the
// connection, with a forward's half-close and linger. It returns when the
// pod's side ends, or portForwardLinger after in has ended if the pod's
// side stays silent, so that it never outlives its forward for long even
// when whoever ran it is gone. A failed dial is returned at once, before
// anything is read from in. crispd runs it as `crispd port-forward-stdio
// <port>` inside the pod's sandbox.
func BridgeStdio(ctx context.Context, port int, in io.Reader, out io.Writer) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("invalid port %d", port)
	}
	conn, err := dialLoopback(ctx, port)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := struct {
		io.Reader
		io.Writer
	}{in, out}
	return splice(ctx, conn, client, func(f func()) { go f() })
}
