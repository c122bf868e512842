package cri

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/crisp-cri/crisp/cri/ocispec"
	"github.com/crisp-cri/crisp/cri/validate"
	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/logkey"
	"github.com/crisp-cri/crisp/runtimes/storage"
	"github.com/crisp-cri/crisp/runtimes/trust"
)

// ErrInvalid marks a request that fails validation (InvalidArgument): the
// validate package's sentinel, for the checks handlers make themselves.
var ErrInvalid = validate.ErrInvalid

// ErrUnimplemented marks what crisp does not do yet (Unimplemented).
var ErrUnimplemented = errors.New("not implemented yet")

// ErrPrecondition marks a request that the object's state refuses
// (FailedPrecondition).
var ErrPrecondition = errors.New("failed precondition")

// ErrFellBehind ends a GetContainerEvents stream whose client read too
// slowly to get every event (Aborted): it should relist and subscribe again.
var ErrFellBehind = errors.New("events stream fell behind")

// ErrUnavailable marks a service going away, as at shutdown (Unavailable):
// the client reconnects.
var ErrUnavailable = errors.New("unavailable")

// codeOf maps an error to its gRPC code. This is the one place that does.
func codeOf(err error) codes.Code {
	if s, ok := status.FromError(err); ok {
		return s.Code() // already a status (Unimplemented from the embedded servers)
	}
	switch {
	case errors.Is(err, db.ErrNotFound), errors.Is(err, storage.ErrImageNotFound):
		return codes.NotFound
	case errors.Is(err, storage.ErrUnauthorized):
		return codes.Unauthenticated
	case errors.Is(err, storage.ErrInvalidReference):
		return codes.InvalidArgument
	case errors.Is(err, storage.ErrImageInUse):
		return codes.FailedPrecondition
	case errors.Is(err, storage.ErrPullStalled):
		// Not DeadlineExceeded: a client reads that as its own deadline
		// passing. The registry stopped answering, a transient failure
		// worth retrying with backoff, which is what Unavailable says.
		return codes.Unavailable
	case errors.Is(err, db.ErrAlreadyExists), errors.Is(err, db.ErrNameReserved):
		return codes.AlreadyExists
	case errors.Is(err, ErrInvalid), errors.Is(err, db.ErrInvalid), errors.Is(err, db.ErrAmbiguous):
		return codes.InvalidArgument
	case errors.Is(err, ErrPrecondition), errors.Is(err, db.ErrWrongState), errors.Is(err, db.ErrInUse):
		return codes.FailedPrecondition
	case errors.Is(err, trust.ErrUnknownHandler), errors.Is(err, trust.ErrConflict), errors.Is(err, ocispec.ErrInvalid):
		return codes.InvalidArgument
	case errors.Is(err, trust.ErrNoUntrustedHandler), errors.Is(err, trust.ErrHostAccess), errors.Is(err, trust.ErrTrustedRuntimeClass):
		return codes.FailedPrecondition
	case errors.Is(err, ErrOverloaded):
		return codes.ResourceExhausted
	case errors.Is(err, ErrFellBehind):
		return codes.Aborted
	case errors.Is(err, ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, ErrUnimplemented), errors.Is(err, ocispec.ErrUnsupported):
		return codes.Unimplemented
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Internal
}

// toStatus turns err into a gRPC status error, keeping its message.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codeOf(err), err.Error())
}

// UnaryInterceptor maps errors to gRPC codes and logs every call with its
// code and duration: reads at debug, anything that failed at warn or error.
func UnaryInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		err = toStatus(err)
		code := status.Code(err)
		attrs := []any{slog.String(logkey.RPC, info.FullMethod), slog.String(logkey.Code, code.String()), slog.Duration(logkey.Took, time.Since(start))}
		switch code {
		case codes.OK:
			log.Debug("rpc", attrs...)
		case codes.Internal, codes.Unknown, codes.DataLoss:
			log.Error("rpc", append(attrs, slog.Any(logkey.Err, err))...)
		default:
			log.Info("rpc", append(attrs, slog.Any(logkey.Err, err))...)
		}
		return resp, err
	}
}
