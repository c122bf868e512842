package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/crisp-cri/crisp/db"
)

// Trigger says why a pass ran.
type Trigger string

// Triggers, as stored in reconcile_runs.
const (
	TriggerStartup  Trigger = "startup"
	TriggerPeriodic Trigger = "periodic"
	TriggerAdmin    Trigger = "admin"
)

// Report is what one pass found and did.
type Report struct {
	Trigger  Trigger
	DryRun   bool
	Started  time.Time
	Duration time.Duration
	Outcomes []Outcome // in a dry run: the actions a real pass would take, Err nil
	Err      error     // observing failed; no action was taken
}

// Reconciler runs passes: on demand, at start and periodically. Passes never
// overlap. It is safe for concurrent use.
type Reconciler struct {
	store     Store
	storage   Storage   // nil: storage not observed
	runtime   Runtime   // nil: runtimes not observed
	leftovers Leftovers // nil: other resources not observed
	log       *slog.Logger
	cfg       Config
	now       func() time.Time

	mu       sync.Mutex // one pass at a time; guards lastBoot
	lastBoot string     // the boot id the database held at the last observe
}

// New returns a reconciler over store and, when not nil, storage, runtime
// and leftovers. Without storage and runtime it only repairs what the
// database alone can tell (names without owners).
func New(store Store, storage Storage, runtime Runtime, leftovers Leftovers, cfg Config, log *slog.Logger) *Reconciler {
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 2 * time.Minute
	}
	if cfg.ActionTimeout <= 0 {
		cfg.ActionTimeout = 30 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	return &Reconciler{store: store, storage: storage, runtime: runtime, leftovers: leftovers, cfg: cfg, log: log, now: time.Now}
}

// Reconcile runs one pass: Observe, Diff, and Apply unless dryRun. Every
// pass, dry or not, is recorded in reconcile_runs. The error is that of
// observing or of recording; failed actions are in the report.
func (r *Reconciler) Reconcile(ctx context.Context, trigger Trigger, dryRun bool) (Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := Report{Trigger: trigger, DryRun: dryRun, Started: r.now()}
	snap, err := r.observe(ctx)
	if err != nil {
		rep.Err = fmt.Errorf("observe: %w", err)
	} else {
		grace := r.cfg.Grace
		if trigger == TriggerStartup {
			grace = 0 // calls that change the node wait for this pass: none is in flight
		}
		actions := Diff(snap, r.now(), grace)
		if dryRun {
			for _, a := range actions {
				rep.Outcomes = append(rep.Outcomes, Outcome{Action: a})
			}
		} else {
			rep.Outcomes = r.Apply(ctx, actions)
			r.recordBoot(ctx)
		}
	}
	rep.Duration = r.now().Sub(rep.Started)
	err = r.record(ctx, rep)
	if r.cfg.OnPass != nil && !dryRun {
		r.cfg.OnPass(rep)
	}
	if err != nil {
		return rep, errors.Join(rep.Err, err)
	}
	return rep, rep.Err
}

// observe takes a snapshot with whatever views of the node r has, and
// tells whether the machine rebooted since the last pass.
func (r *Reconciler) observe(ctx context.Context) (Snapshot, error) {
	var storage Storage
	var runtime Runtime
	if r.storage != nil && r.runtime != nil {
		storage, runtime = r.storage, r.runtime
	}
	snap, err := Observe(ctx, r.store, storage, runtime, r.leftovers)
	if err != nil || r.cfg.BootID == "" {
		return snap, err
	}
	last, err := r.store.NodeValue(ctx, db.NodeBootID)
	if err != nil {
		return snap, err
	}
	r.lastBoot = last
	// No boot recorded (first start, or a lost database): the node itself
	// says what survived.
	snap.Rebooted = last != "" && last != r.cfg.BootID
	return snap, nil
}

// recordBoot notes the boot of this pass, after its repairs, so that the
// next pass does not take the node for rebooted again. A failed repair is
// found again by the rules that do not need the boot id.
func (r *Reconciler) recordBoot(ctx context.Context) {
	if r.cfg.BootID == "" || r.lastBoot == r.cfg.BootID {
		return
	}
	if err := r.store.SetNodeValue(ctx, db.NodeBootID, r.cfg.BootID); err != nil {
		r.log.Error("record boot id", slog.Any("err", err))
	}
}

func (r *Reconciler) record(ctx context.Context, rep Report) error {
	counts := db.IntMap(rep.Counts())
	var errs []error
	if rep.Err != nil {
		errs = append(errs, rep.Err)
	}
	for _, o := range rep.Outcomes {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("%s %s %s: %w", o.Kind, o.Object, o.ID, o.Err))
		}
	}
	msg := ""
	if err := errors.Join(errs...); err != nil {
		msg = err.Error()
	}
	run := db.ReconcileRun{Trigger: string(rep.Trigger), DryRun: rep.DryRun, StartedAt: rep.Started.UnixNano(),
		DurationNS: int64(rep.Duration), Actions: len(rep.Outcomes), Counts: counts, Errors: msg}
	// Record even when the caller's context ended: the pass happened.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return r.store.RecordReconcileRun(rctx, run)
}

// Run owns the reconcile loop until ctx ends: a pass every interval, with up
// to 10% jitter so that a fleet's nodes do not pass in step. The startup
// pass is the caller's (it must run alone: no call that changes the node
// may be in flight).
func (r *Reconciler) Run(ctx context.Context) {
	for {
		wait := r.cfg.Interval + time.Duration(rand.Int64N(int64(r.cfg.Interval)/10+1))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		rep, err := r.Reconcile(ctx, TriggerPeriodic, false)
		if err != nil && ctx.Err() == nil {
			r.log.Error("reconcile pass failed", slog.Any("err", err))
		} else if len(rep.Outcomes) > 0 {
			r.log.Info("reconcile pass", slog.Int("actions", len(rep.Outcomes)), slog.Duration("took", rep.Duration))
		}
	}
}
