// Package stream is crisp's CRI streaming server: the HTTP endpoint whose
// URLs the CRI calls Exec, Attach and PortForward return, and which kubelet
// and crictl then connect to (SPDY or WebSocket, served by
// k8s.io/cri-streaming). Behind it, exec runs `<runtime> exec` with pipes or
// a pseudo-terminal, attach talks to conmon's attach socket and control
// FIFO, and port-forward dials the port inside the pod's network namespace
// or, for a pod on gVisor's netstack, runs a bridge process inside its
// sandbox (BridgeStdio).
//
// It learns about containers and pods only through the Containers
// interface, which package cri implements; it imports nothing from crisp's
// cri, db or reconciler packages, and knows no gRPC beyond the status
// errors k8s.io/cri-streaming itself returns.
package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// Containers is what the streaming server needs of crisp; package cri
// implements it. Its methods are called from the session's goroutine and
// must be safe for concurrent use. Errors are passed back to the streaming
// client as they are.
type Containers interface {
	// ExecTarget resolves a running container: its runtime binary and
	// global args, and the OCI process to run. `runc exec --process`
	// takes every field from that process and nothing from the
	// container's own, so pass the container spec's process whole (user,
	// env, cwd, capabilities, no_new_privileges, apparmor, rlimits...);
	// the server replaces Args, Terminal and ConsoleSize.
	ExecTarget(ctx context.Context, containerID string) (ExecTarget, error)
	// AttachTarget returns conmon's attach socket and control FIFO for a
	// running container, and how its stdio was set up.
	AttachTarget(ctx context.Context, containerID string) (AttachTarget, error)
	// PortForwardTarget says how to reach the ports of a ready pod
	// sandbox.
	PortForwardTarget(ctx context.Context, podSandboxID string) (PortForwardTarget, error)
}

// PortForwardTarget is how to reach a pod's ports: in its network
// namespace, where the host kernel serves the pod's loopback, or, when
// the pod's network stack runs inside its sandbox (gVisor's netstack)
// and the host cannot reach it, through a bridge process in the sandbox.
// Exactly one field is set.
type PortForwardTarget struct {
	// NetNS is the pod's network namespace path: the server dials
	// localhost:port in it.
	NetNS string
	// Bridge runs a process in the pod's sandbox that connects to
	// localhost:port and bridges its stdin and stdout to it (see
	// BridgeStdio): the port number is appended to Bridge.Process.Args.
	Bridge *ExecTarget
}

// ExecTarget is where and how to run an exec'd process.
type ExecTarget struct {
	RuntimePath string        // runtime binary, e.g. /usr/sbin/runc
	GlobalArgs  []string      // before the subcommand, e.g. ["--root=/run/crisp/runc"]
	ContainerID string        // the runtime's id of the container
	Process     specs.Process // user, env, cwd, capabilities... of the container
	// TTYArgs are the exec flags that ask the runtime for a terminal
	// (runc's --tty; runsc needs none: process.terminal makes the stdio
	// it is given the terminal).
	TTYArgs []string
}

// AttachTarget is a running container's conmon endpoints.
type AttachTarget struct {
	Socket    string // conmon's attach socket (SOCK_SEQPACKET), <bundle>/attach with --full-attach
	CtlFifo   string // conmon's control FIFO, <bundle>/ctl
	Tty       bool   // the container has a terminal
	Stdin     bool   // conmon keeps the container's stdin (conmon -i)
	StdinOnce bool   // the container's stdin closes when the first attach ends
}

// Config configures a Server. Zero fields take the defaults.
type Config struct {
	// Addr is the host:port to listen on; default "127.0.0.1:0". The
	// server has no authentication, so the host must be a loopback
	// address (or "localhost").
	Addr string
	// StreamIdleTimeout closes a connection with no traffic for this
	// long; default 4 hours.
	StreamIdleTimeout time.Duration
	// StreamCreationTimeout bounds how long a client may take to open its
	// streams after connecting; default 30 seconds.
	StreamCreationTimeout time.Duration
}

// DefaultAddr is the listen address when Config.Addr is empty.
const DefaultAddr = "127.0.0.1:0"

// ErrNotServing is returned by the Get methods before Start or after Stop,
// and by sessions that arrive while the server stops.
var ErrNotServing = errors.New("stream server not serving")

// Server is crisp's streaming server. Its methods are safe for concurrent
// use. Stop ends every session: exec'd processes are killed, attach and
// port-forward connections closed.
type Server struct {
	cfg Config
	c   Containers
	log *slog.Logger

	ctx    context.Context // lifecycle; cancelled by Stop
	cancel context.CancelFunc
	// wg counts the serve loop, sessions and every goroutine a session
	// starts; Stop waits for it after closing all connections.
	wg sync.WaitGroup

	mu        sync.Mutex // guards the fields below
	started   bool
	stopped   bool
	streaming streaming.Server
	http      *http.Server
	addr      string
	conns     map[*trackedConn]struct{}
}

// New checks cfg and returns a Server that is not yet listening. A nil log
// discards logs. It returns an error if cfg.Addr is not a loopback address.
func New(cfg Config, c Containers, log *slog.Logger) (*Server, error) {
	if c == nil {
		return nil, errors.New("stream server: no Containers")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.StreamIdleTimeout <= 0 {
		cfg.StreamIdleTimeout = streaming.DefaultConfig.StreamIdleTimeout
	}
	if cfg.StreamCreationTimeout <= 0 {
		cfg.StreamCreationTimeout = streaming.DefaultConfig.StreamCreationTimeout
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("stream server address %q: %w", cfg.Addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("stream server address %q: not a loopback address", cfg.Addr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, c: c, log: log, ctx: ctx, cancel: cancel,
		conns: make(map[*trackedConn]struct{})}, nil
}

// Start listens on the configured address and serves in the background.
// It returns once the listener is open; the Get methods work from then on.
// A Server starts only once.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.stopped {
		return errors.New("stream server: already started")
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("stream server: %w", err)
	}
	addr := ln.Addr().String()
	scfg := streaming.DefaultConfig
	scfg.Addr = addr
	scfg.BaseURL = &url.URL{Scheme: "http", Host: addr, Path: "/"}
	scfg.StreamIdleTimeout = s.cfg.StreamIdleTimeout
	scfg.StreamCreationTimeout = s.cfg.StreamCreationTimeout
	ss, err := streaming.NewServer(scfg, runtimeAdapter{s})
	if err != nil {
		ln.Close()
		return fmt.Errorf("stream server: %w", err)
	}
	hs := &http.Server{
		Handler:           ss,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnContext:       connContext,
	}
	s.started, s.streaming, s.http, s.addr = true, ss, hs, addr
	s.wg.Go(func() {
		if err := hs.Serve(&trackingListener{Listener: ln, s: s}); !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("stream server stopped serving", slog.Any(logkey.Err, err))
		}
	})
	s.log.Info("stream server listening", slog.String("addr", addr))
	return nil
}

// Addr returns the address the server listens on, or "" before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stop closes the listener and every connection, ends all sessions and
// waits for them. It is idempotent.
func (s *Server) Stop() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	hs := s.http
	s.mu.Unlock()

	s.cancel()
	var err error
	if hs != nil {
		err = hs.Close() // the listener and connections not hijacked
	}
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns { // hijacked: SPDY and WebSocket sessions
		c.Close()
	}
	s.wg.Wait()
	return err
}

// server returns the streaming server, or ErrNotServing.
func (s *Server) server() (streaming.Server, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started || s.stopped {
		return nil, ErrNotServing
	}
	return s.streaming, nil
}

// GetExec returns the URL for an exec session. Invalid requests get a
// gRPC InvalidArgument status error from k8s.io/cri-streaming; before
// Start or after Stop it returns ErrNotServing. It does not check that the
// container exists: that is the caller's job.
func (s *Server) GetExec(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	ss, err := s.server()
	if err != nil {
		return nil, err
	}
	return ss.GetExec(req)
}

// GetAttach returns the URL for an attach session; errors as GetExec.
func (s *Server) GetAttach(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	ss, err := s.server()
	if err != nil {
		return nil, err
	}
	return ss.GetAttach(req)
}

// GetPortForward returns the URL for a port-forward session; errors as
// GetExec.
func (s *Server) GetPortForward(req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	ss, err := s.server()
	if err != nil {
		return nil, err
	}
	return ss.GetPortForward(req)
}

// session registers a session with the server. The returned context ends
// when ctx does, when the client's connection closes (for exec and attach,
// whose ctx is the request's) or when the server stops; call end when the
// session is over. Goroutines of a session are started with s.wg.Go.
func (s *Server) session(ctx context.Context) (context.Context, func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, nil, ErrNotServing
	}
	s.wg.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() { stop(); cancel(); s.wg.Done() }, nil
}
