package stream

import (
	"context"
	"io"
	"net"
	"sync"

	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// runtimeAdapter is the streaming.Runtime that k8s.io/cri-streaming calls
// once a client has opened its streams. It keeps the session methods off
// Server's exported API.
type runtimeAdapter struct{ s *Server }

var _ streaming.Runtime = runtimeAdapter{}

// Exec implements streaming.Runtime.
func (a runtimeAdapter) Exec(ctx context.Context, containerID string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return a.s.exec(ctx, containerID, cmd, in, out, errOut, tty, resize)
}

// Attach implements streaming.Runtime.
func (a runtimeAdapter) Attach(ctx context.Context, containerID string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return a.s.attach(ctx, containerID, in, out, errOut, tty, resize)
}

// PortForward implements streaming.Runtime.
func (a runtimeAdapter) PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error {
	return a.s.portForward(ctx, podSandboxID, port, stream)
}

// trackingListener records accepted connections, so that Stop can close
// the hijacked ones (SPDY and WebSocket sessions), which http.Server.Close
// leaves alone.
type trackingListener struct {
	net.Listener
	s *Server
}

// Accept wraps the connection in a trackedConn. Once the server stops, it
// closes new connections and reports net.ErrClosed.
func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	tc := &trackedConn{Conn: c, s: l.s, ctx: ctx, cancel: cancel}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.s.stopped {
		cancel()
		c.Close()
		return nil, net.ErrClosed
	}
	l.s.conns[tc] = struct{}{}
	return tc, nil
}

// trackedConn is a server connection whose context ends when it closes.
type trackedConn struct {
	net.Conn
	s      *Server
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

// Close closes the connection, ends its context and forgets it.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.cancel()
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	})
	return err
}

// connContext makes each request's context end when its connection
// closes, also after the connection is hijacked: that is how an exec or
// attach session learns that its client has gone.
func connContext(ctx context.Context, c net.Conn) context.Context {
	tc, ok := c.(*trackedConn)
	if !ok {
		return ctx
	}
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(tc.ctx, cancel)
	return ctx
}
