package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/crisp-cri/crisp/db"
)

// Outcome is one action as Apply carried it out; Err is nil when it is done.
type Outcome struct {
	Action
	Err error
}

// Apply carries out actions, each on its own with a timeout of
// r.cfg.ActionTimeout, up to r.cfg.Workers at a time. Actions run in
// waves of one kind and rank (see objectRank), in the order Diff sorted
// them, so that a pod is adopted before its containers and a container
// forgotten before its pod. NotFound counts as done, so Apply run twice on
// the same actions changes nothing the second time. A failed action is
// logged and found again by the next pass; it never stops the others.
func (r *Reconciler) Apply(ctx context.Context, actions []Action) []Outcome {
	out := make([]Outcome, len(actions))
	for start := 0; start < len(actions); {
		end := start + 1
		for end < len(actions) && actions[end].Kind == actions[start].Kind && objectRank(actions[end]) == objectRank(actions[start]) {
			end++
		}
		r.applyWave(ctx, actions[start:end], out[start:end])
		start = end
	}
	return out
}

// applyWave runs actions that do not depend on each other in parallel.
func (r *Reconciler) applyWave(ctx context.Context, actions []Action, out []Outcome) {
	sem := make(chan struct{}, r.cfg.Workers)
	var wg sync.WaitGroup
	for i, a := range actions {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i] = r.applyOne(ctx, a)
		})
	}
	wg.Wait()
}

func (r *Reconciler) applyOne(ctx context.Context, a Action) Outcome {
	actx, cancel := context.WithTimeout(ctx, r.cfg.ActionTimeout)
	err := r.apply(actx, a)
	cancel()
	if errors.Is(err, db.ErrNotFound) {
		err = nil // already gone: what the action wanted
	}
	log := r.log.With(slog.String("action", string(a.Kind)), slog.String(string(a.Object), a.ID), slog.String("reason", a.Reason))
	if a.Kind == Clean {
		log = log.With(slog.String("path", a.Name))
	}
	if err != nil {
		log.Error("reconcile action failed", slog.Any("err", err))
	} else {
		log.Warn("reconciled")
		r.journal(ctx, a)
	}
	return Outcome{Action: a, Err: err}
}

// journal records a repair in the events journal. A failure to journal
// does not undo the repair; it is logged.
func (r *Reconciler) journal(ctx context.Context, a Action) {
	kind, id, detail := string(a.Object), a.ID, a.Reason
	switch a.Kind {
	case Release:
		kind, detail = "name", a.Name+": "+a.Reason
	case Clean:
		kind, detail = "node", string(a.Object)+" "+a.Name+": "+a.Reason
		if id == "" {
			id = a.Name
		}
	}
	err := r.store.AppendEvent(ctx, db.Event{Kind: kind, ObjectID: id, Type: "reconcile." + string(a.Kind), Detail: detail})
	if err != nil {
		r.log.Error("journal reconcile action", slog.String("action", string(a.Kind)), slog.Any("err", err))
	}
}

func (r *Reconciler) apply(ctx context.Context, a Action) error {
	switch a.Kind {
	case Adopt:
		return r.adopt(ctx, a)
	case Forget:
		return r.forget(ctx, a)
	case MarkExited:
		if a.Object == db.KindPod {
			return ignoreWrongState(r.store.SetSandboxState(ctx, a.ID, db.SandboxNotReady, db.SandboxReady))
		}
		exit := db.Exit{Code: a.ExitCode, Reason: a.ExitReason, Message: a.Reason, At: r.now().UnixNano()}
		return ignoreWrongState(r.store.MarkContainerExited(ctx, a.ID, exit))
	case FinishOrRollback:
		switch a.FinishTo {
		case "":
		case db.ContainerRunning:
			started := db.Started{PID: a.PID, PIDStart: a.PIDStart, At: r.now().UnixNano()}
			return ignoreWrongState(r.store.MarkContainerStarted(ctx, a.ID, started))
		default:
			return ignoreWrongState(r.store.SetContainerState(ctx, a.ID, a.FinishTo, db.ContainerCreating))
		}
		return r.rollback(ctx, a)
	case Orphan:
		return r.removeOrphan(ctx, a)
	case Clean:
		if r.leftovers == nil {
			return fmt.Errorf("clean %s %s: no view of the node", a.Object, a.Name)
		}
		return r.leftovers.Clean(ctx, Resource{Object: a.Object, Owner: a.ID, Path: a.Name})
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

// adopt rebuilds a row from its record and inserts it in the state Diff
// read off the runtime.
func (r *Reconciler) adopt(ctx context.Context, a Action) error {
	rb, err := r.storage.Rebuild(ctx, Record{ID: a.ID, Kind: a.Object})
	if err != nil {
		return fmt.Errorf("rebuild %s %s: %w", a.Object, a.ID, err)
	}
	switch {
	case rb.Sandbox != nil:
		sb := *rb.Sandbox
		sb.State = a.SandboxState
		err = r.store.AdoptSandbox(ctx, sb)
	case rb.Container != nil:
		err = r.store.AdoptContainer(ctx, r.adoptedContainer(*rb.Container, a))
	default:
		return fmt.Errorf("rebuild %s %s: no row", a.Object, a.ID)
	}
	if errors.Is(err, db.ErrAlreadyExists) {
		return nil // the row appeared meanwhile
	}
	return err
}

// adoptedContainer puts the state of the action on a rebuilt row.
func (r *Reconciler) adoptedContainer(c db.Container, a Action) db.Container {
	if a.ContainerState == "" {
		return c // a Rebuild that knew better (tests)
	}
	c.State = a.ContainerState
	switch c.State {
	case db.ContainerCreated: // its init waits to be started
		c.PID, c.PIDStart, c.StartedAt = 0, 0, 0
	case db.ContainerRunning:
		c.PID = a.PID
	case db.ContainerExited:
		code := a.ExitCode
		c.ExitCode, c.Reason, c.Message, c.PID = &code, a.ExitReason, a.Reason, 0
		if c.FinishedAt == 0 {
			c.FinishedAt = r.now().UnixNano()
		}
	}
	return c
}

// forget deletes the row of a container (or pod with infra, whose infra
// container has the pod's id) that is gone from storage and runtime. What
// crisp keeps of it beside them on the node, its bundle dir and exit file,
// goes first: nothing else would ever remove them. Storage's Remove does
// that and finds no record to delete.
func (r *Reconciler) forget(ctx context.Context, a Action) error {
	if r.storage != nil {
		if err := r.storage.Remove(ctx, a.ID); err != nil && !errors.Is(err, db.ErrNotFound) {
			return fmt.Errorf("remove what is left of %s: %w", a.ID, err)
		}
	}
	if a.Object == db.KindPod {
		return r.store.DeleteSandbox(ctx, a.ID)
	}
	return r.store.DeleteContainer(ctx, a.ID)
}

// removeOrphan kills and deletes a runtime container and removes its
// storage record, whichever of the two exists.
func (r *Reconciler) removeOrphan(ctx context.Context, a Action) error {
	if a.Handler != "" {
		if err := r.runtime.Destroy(ctx, a.Handler, a.ID); err != nil && !errors.Is(err, db.ErrNotFound) {
			return fmt.Errorf("destroy %s in runtime %s: %w", a.ID, a.Handler, err)
		}
	}
	if !a.InStorage {
		return nil
	}
	if err := r.storage.Remove(ctx, a.ID); err != nil && !errors.Is(err, db.ErrNotFound) {
		return fmt.Errorf("remove %s from storage: %w", a.ID, err)
	}
	return nil
}

// rollback undoes a half-done create or finishes a half-done remove: the
// side effects go first (runtime, then storage), the row last, so a
// failure part way leaves a row for the next pass to find. A pod's netns,
// IPs and dir are Clean actions of the same pass.
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
		if r.storage != nil && a.Object == db.KindContainer {
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

// Counts tallies the report's outcomes by kind, a failed one under
// "<kind>.failed": the one tally the database's reconcile runs and the
// admin service's answer both show.
func (rep Report) Counts() map[string]int {
	counts := map[string]int{}
	for _, o := range rep.Outcomes {
		key := string(o.Kind)
		if o.Err != nil {
			key += ".failed"
		}
		counts[key]++
	}
	return counts
}

// Failed counts the report's failed actions.
func (rep Report) Failed() int {
	n := 0
	for _, o := range rep.Outcomes {
		if o.Err != nil {
			n++
		}
	}
	return n
}

// Config tunes the reconciler.
type Config struct {
	Interval      time.Duration // between periodic passes (jittered by up to 10%)
	Grace         time.Duration // leave objects younger than this alone
	ActionTimeout time.Duration // per action
	Workers       int           // actions applied at once; default 8
	// BootID identifies the machine's current boot; a pass that finds
	// another one recorded knows the node rebooted. "" turns that off.
	BootID string
	// OnPass, when set, is told of every pass that applied actions (not
	// dry runs), after it is recorded: crispd's metrics count them.
	OnPass func(Report)
}
