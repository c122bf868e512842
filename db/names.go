package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// claimName reserves name for owner inside tx. If the name is already
// held it returns the holder's id and no error, so that the caller can
// tell a retry of its own request from a conflict.
func (s *Store) claimName(ctx context.Context, tx *sqlx.Tx, kind NameKind, name, owner string) (holder string, err error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty %s name", ErrInvalid, kind)
	}
	n := Name{Kind: kind, Name: name, OwnerID: owner, ReservedAt: s.nanos()}
	_, err = tx.NamedExecContext(ctx, s.q.ReserveName, n)
	if err = translate(err); !isUniqueViolation(err) {
		return "", err
	}
	var cur Name
	if err := tx.GetContext(ctx, &cur, s.q.GetName, kind, name); err != nil {
		return "", fmt.Errorf("read holder of %s name %q: %w", kind, name, translate(err))
	}
	return cur.OwnerID, nil
}

// ReserveName reserves a pod or container name for owner on its own. It
// returns ErrNameReserved naming the holder if another owner has it; a
// repeat by the same owner succeeds.
func (s *Store) ReserveName(ctx context.Context, kind NameKind, name, owner string) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		holder, err := s.claimName(ctx, tx, kind, name, owner)
		if err != nil {
			return err
		}
		if holder != "" && holder != owner {
			return nameConflict(kind, name, holder)
		}
		return nil
	})
}

// nameConflict is the error for a name held by someone else, in the
// wording kubelet users know from CRI-O.
func nameConflict(kind NameKind, name, holder string) error {
	return fmt.Errorf("conflict, name %q already reserved for %s %q: %w", name, kind, holder, ErrNameReserved)
}

// ReleaseName frees name if owner holds it. Releasing a name that is free
// or held by someone else is a no-op, so a late release cannot take a name
// from its new holder.
func (s *Store) ReleaseName(ctx context.Context, kind NameKind, name, owner string) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, s.q.ReleaseName, kind, name, owner)
		return translate(err)
	})
}

// NameOwner returns the id holding name, or ErrNotFound.
func (s *Store) NameOwner(ctx context.Context, kind NameKind, name string) (string, error) {
	var n Name
	if err := s.db.GetContext(ctx, &n, s.q.GetName, kind, name); err != nil {
		if err = translate(err); errors.Is(err, ErrNotFound) {
			return "", fmt.Errorf("%s name %q: %w", kind, name, ErrNotFound)
		}
		return "", err
	}
	return n.OwnerID, nil
}

// Names lists every reservation.
func (s *Store) Names(ctx context.Context) ([]Name, error) {
	var out []Name
	err := s.db.SelectContext(ctx, &out, s.q.ListNames)
	return out, translate(err)
}
