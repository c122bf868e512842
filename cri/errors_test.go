package cri

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/crisp-cri/crisp/cri/ocispec"
	"github.com/crisp-cri/crisp/cri/validate"
	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/storage"
)

func TestCodeOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"not found", fmt.Errorf("sandbox %q: %w", "x", db.ErrNotFound), codes.NotFound},
		{"already exists", fmt.Errorf("insert: %w", db.ErrAlreadyExists), codes.AlreadyExists},
		{"name reserved", fmt.Errorf("conflict: %w", db.ErrNameReserved), codes.AlreadyExists},
		{"validation", fmt.Errorf("metadata.name is empty: %w", ErrInvalid), codes.InvalidArgument},
		{"bad id prefix", fmt.Errorf("%w: id prefix", db.ErrInvalid), codes.InvalidArgument},
		{"bad container config", fmt.Errorf("cpu_quota: %w", ocispec.ErrInvalid), codes.InvalidArgument},
		{"request validation", fmt.Errorf("log_path: %w", validate.ErrInvalid), codes.InvalidArgument},
		{"overloaded", fmt.Errorf("slots: %w", ErrOverloaded), codes.ResourceExhausted},
		{"ambiguous", fmt.Errorf("prefix ab: %w", db.ErrAmbiguous), codes.InvalidArgument},
		{"wrong state", fmt.Errorf("sandbox is notready: %w", db.ErrWrongState), codes.FailedPrecondition},
		{"in use", fmt.Errorf("has containers: %w", db.ErrInUse), codes.FailedPrecondition},
		{"precondition", fmt.Errorf("running: %w", ErrPrecondition), codes.FailedPrecondition},
		{"deadline", fmt.Errorf("pull: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"pull stalled", fmt.Errorf("pull example.com/a:1: %w: no data for 2s", storage.ErrPullStalled), codes.Unavailable},
		{"canceled", context.Canceled, codes.Canceled},
		{"events fell behind", fmt.Errorf("subscriber 3 fell behind by 9 events: %w", ErrFellBehind), codes.Aborted},
		{"shutting down", fmt.Errorf("crispd is shutting down: %w", ErrUnavailable), codes.Unavailable},
		{"already a status", status.Error(codes.Unimplemented, "later"), codes.Unimplemented},
		{"anything else", errors.New("disk on fire"), codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := codeOf(tt.err); got != tt.want {
				t.Errorf("codeOf(%v) = %v, want %v", tt.err, got, tt.want)
			}
			st := status.Convert(toStatus(tt.err))
			if st.Code() != tt.want || st.Message() != tt.err.Error() && tt.want != codes.Unimplemented {
				t.Errorf("toStatus(%v) = %v %q, want %v keeping the message", tt.err, st.Code(), st.Message(), tt.want)
			}
		})
	}
	if toStatus(nil) != nil {
		t.Errorf("toStatus(nil) != nil")
	}
}
