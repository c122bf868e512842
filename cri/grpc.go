package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/validate"
	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// MaxMessageBytes caps gRPC messages both ways: kubelet's and containerd's
// 16 MiB. Without it gRPC takes 4 MiB in and sends anything out.
const MaxMessageBytes = 16 << 20

// DefaultMaxInFlight is how many requests crispd works on at once by
// default; as many more may wait for a slot, and the rest are refused.
const DefaultMaxInFlight = 256

// ErrOverloaded marks a request refused because too many are in flight
// (ResourceExhausted): kubelet retries it.
var ErrOverloaded = errors.New("too many requests in flight")

// GRPCConfig is how a crisp gRPC server guards itself.
type GRPCConfig struct {
	Log *slog.Logger
	// Validator checks each request before its handler runs; nil checks
	// nothing (the admin service, root only).
	Validator *validate.Validator
	// MaxInFlight bounds the requests handled at once; 0 means
	// DefaultMaxInFlight.
	MaxInFlight int
	// Unary and Stream, when set, wrap every call outside all the guards,
	// so they see the status a client gets (crispd's metrics).
	Unary  grpc.UnaryServerInterceptor
	Stream grpc.StreamServerInterceptor
	// Ready, when set, holds every unary call that changes the node until
	// it is closed (after the startup reconcile); reads go through at
	// once (see readOnly).
	Ready <-chan struct{}
}

// NewGRPCServer returns a gRPC server with crisp's guards, outermost
// first: the error-to-status mapping and call log, recovery from a
// handler's panic (Internal, never a crash), the wait for Ready, the
// in-flight bound, and request validation. Register the services on it.
func NewGRPCServer(c GRPCConfig) *grpc.Server {
	n := c.MaxInFlight
	if n <= 0 {
		n = DefaultMaxInFlight
	}
	lim := &inFlight{slots: make(chan struct{}, n), maxWaiting: int64(n)}
	v := c.Validator
	var outerUnary []grpc.UnaryServerInterceptor
	var outerStream []grpc.StreamServerInterceptor
	if c.Unary != nil {
		outerUnary = append(outerUnary, c.Unary)
	}
	if c.Stream != nil {
		outerStream = append(outerStream, c.Stream)
	}
	return grpc.NewServer(
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.ChainUnaryInterceptor(append(outerUnary,
			UnaryInterceptor(c.Log),
			func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
				defer recoverPanic(c.Log, info.FullMethod, &err)
				if err := waitReady(ctx, c.Ready, info.FullMethod); err != nil {
					return nil, err
				}
				release, err := lim.acquire(ctx)
				if err != nil {
					return nil, err
				}
				defer release()
				if v != nil {
					if err := v.Request(req); err != nil {
						return nil, err
					}
				}
				return h(ctx, req)
			})...),
		grpc.ChainStreamInterceptor(append(outerStream,
			func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
				defer func() { err = toStatus(err) }()
				defer recoverPanic(c.Log, info.FullMethod, &err)
				// An events stream lasts as long as its client: it would
				// hold a request slot for good. The hub bounds those
				// streams itself.
				if info.FullMethod != runtimeapi.RuntimeService_GetContainerEvents_FullMethodName {
					release, err := lim.acquire(ss.Context())
					if err != nil {
						return err
					}
					defer release()
				}
				return h(srv, &validatedStream{ServerStream: ss, v: v})
			})...),
	)
}

// recoverPanic turns a handler's panic into an Internal error, logged with
// its stack: one bad request must not take crispd and every pod's control
// path down with it.
func recoverPanic(log *slog.Logger, method string, err *error) {
	if p := recover(); p != nil {
		log.Error("panic in handler", slog.String(logkey.RPC, method), slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
		*err = fmt.Errorf("%s: internal error: %v", method, p)
	}
}

// validatedStream validates the request of a server-streaming call as the
// handler receives it.
type validatedStream struct {
	grpc.ServerStream
	v *validate.Validator
}

func (s *validatedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.v == nil {
		return nil
	}
	return toStatus(s.v.Request(m))
}

// inFlight bounds concurrent requests: a request takes a slot or waits
// for one while its context lasts; when as many wait as there are slots,
// further requests are refused at once, so a flood cannot pile up
// goroutines and request buffers without end.
type inFlight struct {
	slots      chan struct{}
	waiting    atomic.Int64
	maxWaiting int64
}

func (l *inFlight) acquire(ctx context.Context) (release func(), err error) {
	release = func() { <-l.slots }
	select {
	case l.slots <- struct{}{}:
		return release, nil
	default:
	}
	if l.waiting.Add(1) > l.maxWaiting {
		l.waiting.Add(-1)
		return nil, fmt.Errorf("crispd is handling %d requests and %d more wait: %w", cap(l.slots), l.maxWaiting, ErrOverloaded)
	}
	defer l.waiting.Add(-1)
	select {
	case l.slots <- struct{}{}:
		return release, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a free request slot: %w", ctx.Err())
	}
}
