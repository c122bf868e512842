package db

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// Journal entry kinds, and the type the delete triggers write. Other
// lifecycle entries have the row's new state as their type (see state.go);
// the reconciler's repairs have "reconcile.<action>".
const (
	EventKindPod       = "pod"
	EventKindContainer = "container"
	EventTypeDeleted   = "deleted"
)

// AppendEvent adds e to the events journal (At defaults to now). Lifecycle
// transitions are journaled by triggers; this is for everything else, such
// as the reconciler's repairs.
func (s *Store) AppendEvent(ctx context.Context, e Event) error {
	if e.At == 0 {
		e.At = s.nanos()
	}
	return s.inTxAside(ctx, func(tx *sqlx.Tx) error {
		_, err := tx.NamedExecContext(ctx, s.q.InsertEvent, e)
		if err = translate(err); err != nil {
			return fmt.Errorf("journal %s event for %s: %w", e.Type, e.ObjectID, err)
		}
		return nil
	})
}

// Events returns up to limit journal entries after sequence number after,
// oldest first.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]Event, error) {
	var out []Event
	err := s.db.SelectContext(ctx, &out, s.q.ListEvents, after, limit)
	return out, translate(err)
}

// RecordReconcileRun stores one reconciler pass.
func (s *Store) RecordReconcileRun(ctx context.Context, r ReconcileRun) error {
	return s.inTxAside(ctx, func(tx *sqlx.Tx) error {
		_, err := tx.NamedExecContext(ctx, s.q.InsertReconcileRun, r)
		if err = translate(err); err != nil {
			return fmt.Errorf("record reconcile run: %w", err)
		}
		return nil
	})
}

// ReconcileRuns returns the newest limit passes, newest first.
func (s *Store) ReconcileRuns(ctx context.Context, limit int) ([]ReconcileRun, error) {
	var out []ReconcileRun
	err := s.db.SelectContext(ctx, &out, s.q.ListReconcileRuns, limit)
	return out, translate(err)
}

// EventWithSandbox is a journal entry with the pod its object belongs to:
// the pod itself, or a container's pod while the container's row exists;
// "" for a deleted container and for other kinds.
type EventWithSandbox struct {
	Event
	SandboxID string `db:"sandbox_id"`
}

// EventsWithSandbox is Events, each entry with its pod (see
// EventWithSandbox). Safe for concurrent use.
func (s *Store) EventsWithSandbox(ctx context.Context, after int64, limit int) ([]EventWithSandbox, error) {
	var out []EventWithSandbox
	err := s.db.SelectContext(ctx, &out, s.q.ListEventsWithSandbox, after, limit)
	if err = translate(err); err != nil {
		return nil, fmt.Errorf("read journal after %d: %w", after, err)
	}
	return out, nil
}

// LastEventSeq is the newest journal entry's sequence number, 0 when the
// journal is empty: a reader that starts there sees what commits next.
func (s *Store) LastEventSeq(ctx context.Context) (int64, error) {
	var seq int64
	if err := s.db.GetContext(ctx, &seq, s.q.LastEventSeq); err != nil {
		return 0, fmt.Errorf("read the journal's last sequence number: %w", translate(err))
	}
	return seq, nil
}

// Commits receives after write transactions of this store commit, so a
// journal reader wakes when there may be something new instead of polling
// in a tight loop. Tokens coalesce (one is kept while nobody receives) and
// are meant for one receiver; writes by another process, or another Store
// on the same file, send none.
func (s *Store) Commits() <-chan struct{} { return s.commits }

// Generation counts the write transactions of pod or container rows this
// store has committed. A reader that notes it before a query and finds it
// unchanged afterwards knows that this store changed no such row in
// between, so a view of them built from that query is still current;
// writes by another process or Store are not counted.
func (s *Store) Generation() uint64 { return s.gen.Load() }

// committed counts a commit that changed pod or container rows and hands
// a token to Commits' receiver without ever blocking a writer.
func (s *Store) committed(podsChange bool) {
	if podsChange {
		s.gen.Add(1)
	}
	select {
	case s.commits <- struct{}{}:
	default:
	}
}
