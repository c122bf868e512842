package cri

import (
	"context"
	"errors"
	"log/slog"

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// undoStack collects the undo of each completed step of a create, to run
// in reverse if a later step fails.
type undoStack []func(context.Context) error

func (u *undoStack) push(f func(context.Context) error) { *u = append(*u, f) }

// unwind runs the undos in reverse on a fresh context (the request's may be
// what failed), then deleteRow if every undo worked. Otherwise the row is
// left, still creating, for the reconciler to finish, and the failure is
// logged.
func (u undoStack) unwind(ctx context.Context, what string, log *slog.Logger, deleteRow func(context.Context) error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	var errs []error
	for i := len(u) - 1; i >= 0; i-- {
		if err := u[i](cctx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		errs = append(errs, deleteRow(cctx))
	}
	if err := errors.Join(errs...); err != nil {
		log.Error("undo of a failed "+what+" incomplete; the reconciler will finish it", slog.Any(logkey.Err, err))
	}
}
