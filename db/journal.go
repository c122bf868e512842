package db

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// AppendEvent adds e to the events journal (At defaults to now). Lifecycle
// transitions are journaled by triggers; this is for everything else, such
// as the reconciler's repairs.
func (s *Store) AppendEvent(ctx context.Context, e Event) error {
	if e.At == 0 {
		e.At = s.nanos()
	}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
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
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
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
