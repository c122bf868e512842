package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/crisp-cri/crisp/db"
)

// Outcome is one action as Apply carried it out; Err is nil when it is done.
type Outcome struct {
	Action
	Err error
}

// Apply carries out actions in order, each on its own with a timeout of
// r.cfg.ActionTimeout. NotFound counts as done, so Apply run twice on the
// same actions changes nothing the second time. A failed action is logged
// and found again by the next pass.
func (r *Reconciler) Apply(ctx context.Context, actions []Action) []Outcome {
	out := make([]Outcome, 0, len(actions))
	for _, a := range actions {
		actx, cancel := context.WithTimeout(ctx, r.cfg.ActionTimeout)
		err := r.apply(actx, a)
		cancel()
		if errors.Is(err, db.ErrNotFound) {
			err = nil // already gone: what the action wanted
		}
		log := r.log.With(slog.String("action", string(a.Kind)), slog.String(string(a.Object), a.ID), slog.String("reason", a.Reason))
		if err != nil {
			log.Error("reconcile action failed", slog.Any("err", err))
		} else {
			log.Warn("reconciled")
			r.journal(ctx, a)
		}
		out = append(out, Outcome{Action: a, Err: err})
	}
	return out
}

// journal records a repair in the events journal. A failure to journal
// does not undo the repair; it is logged.
func (r *Reconciler) journal(ctx context.Context, a Action) {
	kind := string(a.Object)
	if a.Kind == Release {
		kind = "name"
	}
	detail := a.Reason
	if a.Name != "" {
		detail = a.Name + ": " + a.Reason
	}
	err := r.store.AppendEvent(ctx, db.Event{Kind: kind, ObjectID: a.ID, Type: "reconcile." + string(a.Kind), Detail: detail})
	if err != nil {
		r.log.Error("journal reconcile action", slog.String("action", string(a.Kind)), slog.Any("err", err))
	}
}

func (r *Reconciler) apply(ctx context.Context, a Action) error {
	switch a.Kind {
	case Adopt:
		return r.adopt(ctx, a)
	case Forget:
		if a.Object == db.KindPod {
			return r.store.DeleteSandbox(ctx, a.ID)
		}
		return r.store.DeleteContainer(ctx, a.ID)
	case MarkExited:
		if a.Object == db.KindPod {
			return ignoreWrongState(r.store.SetSandboxState(ctx, a.ID, db.SandboxNotReady, db.SandboxReady))
		}
		exit := db.Exit{Code: a.ExitCode, Reason: a.ExitReason, Message: a.Reason, At: r.now().UnixNano()}
		return ignoreWrongState(r.store.MarkContainerExited(ctx, a.ID, exit))
	case FinishOrRollback:
		if a.FinishTo != "" {
			return ignoreWrongState(r.store.SetContainerState(ctx, a.ID, a.FinishTo, db.ContainerCreating))
		}
		return r.rollback(ctx, a)
	case Orphan:
		return r.runtime.Destroy(ctx, a.Handler, a.ID)
	case Release:
		return r.store.ReleaseName(ctx, a.Object, a.Name, a.ID)
	}
	return fmt.Errorf("unknown reconcile action %q", a.Kind)
}

// ignoreWrongState: the row has moved on since the snapshot (say, a
// container already recorded as exited), so there is nothing left to do.
func ignoreWrongState(err error) error {
	if errors.Is(err, db.ErrWrongState) {
		return nil
	}
	return err
}

func (r *Reconciler) adopt(ctx context.Context, a Action) error {
	rb, err := r.storage.Rebuild(ctx, Record{ID: a.ID, Kind: a.Object})
	if err != nil {
		return fmt.Errorf("rebuild %s %s from storage: %w", a.Object, a.ID, err)
	}
	switch {
	case rb.Sandbox != nil:
		err = r.store.AdoptSandbox(ctx, *rb.Sandbox)
	case rb.Container != nil:
		err = r.store.AdoptContainer(ctx, *rb.Container)
	default:
		return fmt.Errorf("rebuild %s %s from storage: no row", a.Object, a.ID)
	}
	if errors.Is(err, db.ErrAlreadyExists) {
		return nil // the row appeared meanwhile
	}
	return err
}

// rollback undoes a half-done create or finishes a half-done remove: the
// side effects go first (runtime, then storage), the row last, so a
// failure part way leaves a row for the next pass to find.
func (r *Reconciler) rollback(ctx context.Context, a Action) error {
	ids := []string{a.ID}
	if a.Object == db.KindPod {
		ids = ids[:0]
		if sb, err := r.store.Sandbox(ctx, a.ID); err != nil {
			return err
		} else if sb.InfraID != "" {
			ids = append(ids, sb.InfraID)
		}
	}
	for _, id := range ids {
		if r.runtime != nil {
			if err := r.runtime.Destroy(ctx, a.Handler, id); err != nil && !errors.Is(err, db.ErrNotFound) {
				return fmt.Errorf("destroy %s in runtime %s: %w", id, a.Handler, err)
			}
		}
		if r.storage != nil {
			if err := r.storage.Remove(ctx, id); err != nil && !errors.Is(err, db.ErrNotFound) {
				return fmt.Errorf("remove %s from storage: %w", id, err)
			}
		}
	}
	if a.Object == db.KindPod {
		return r.store.DeleteSandbox(ctx, a.ID)
	}
	return r.store.DeleteContainer(ctx, a.ID)
}

// Counts tallies outcomes by kind: done, and failed.
func Counts(outs []Outcome) (done, failed map[Kind]int) {
	done, failed = map[Kind]int{}, map[Kind]int{}
	for _, o := range outs {
		if o.Err != nil {
			failed[o.Kind]++
		} else {
			done[o.Kind]++
		}
	}
	return done, failed
}

// Config tunes the reconciler.
type Config struct {
	Interval      time.Duration // between periodic passes (jittered by up to 10%)
	Grace         time.Duration // leave objects younger than this alone
	ActionTimeout time.Duration // per action
}
