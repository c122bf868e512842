package db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// ErrWrongState: the row exists but is not in a state the change accepts
// (a container in a sandbox that is not ready, say).
var ErrWrongState = errors.New("wrong state")

// CreateSandbox inserts sb in state creating and reserves its name, in one
// transaction. If the name is already held by a sandbox made from the same
// ConfigHash, it is kubelet retrying a call that timed out: CreateSandbox
// returns that sandbox with created=false and changes nothing. A name held
// by a different config is ErrNameReserved naming the holder.
func (s *Store) CreateSandbox(ctx context.Context, sb Sandbox) (_ Sandbox, created bool, _ error) {
	now := s.nanos()
	if sb.State == "" {
		sb.State = SandboxCreating
	}
	if sb.CreatedAt == 0 {
		sb.CreatedAt = now
	}
	sb.UpdatedAt = now
	var existing Sandbox
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		created = false
		holder, err := s.claimName(ctx, tx, KindPod, sb.Name, sb.ID)
		if err != nil {
			return err
		}
		if holder != "" {
			if err := tx.GetContext(ctx, &existing, s.q.GetSandbox, holder); err != nil {
				return nameConflict(KindPod, sb.Name, holder)
			}
			if existing.ConfigHash != sb.ConfigHash {
				return nameConflict(KindPod, sb.Name, holder)
			}
			return nil
		}
		if err := s.insertSandbox(ctx, tx, sb); err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		return Sandbox{}, false, err
	}
	if !created {
		return existing, false, nil
	}
	return sb, true, nil
}

// AdoptSandbox inserts a sandbox rebuilt by the reconciler, in whatever
// state it was found, and reserves its name. A held name is
// ErrNameReserved; an existing id is ErrAlreadyExists.
func (s *Store) AdoptSandbox(ctx context.Context, sb Sandbox) error {
	sb.UpdatedAt = s.nanos()
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		holder, err := s.claimName(ctx, tx, KindPod, sb.Name, sb.ID)
		if err != nil {
			return err
		}
		if holder != "" && holder != sb.ID {
			return nameConflict(KindPod, sb.Name, holder)
		}
		return s.insertSandbox(ctx, tx, sb)
	})
}

func (s *Store) insertSandbox(ctx context.Context, tx *sqlx.Tx, sb Sandbox) error {
	_, err := tx.NamedExecContext(ctx, s.q.InsertSandbox, sb)
	if err = translate(err); err != nil {
		return fmt.Errorf("insert sandbox %s (%s): %w", sb.ID, sb.Name, err)
	}
	return nil
}

// Sandbox returns the sandbox with that full id, or ErrNotFound.
func (s *Store) Sandbox(ctx context.Context, id string) (Sandbox, error) {
	var sb Sandbox
	if err := s.db.GetContext(ctx, &sb, s.q.GetSandbox, id); err != nil {
		return Sandbox{}, fmt.Errorf("sandbox %q: %w", id, translate(err))
	}
	return sb, nil
}

// ResolveSandboxID expands a truncated id (crictl's short ids): one match
// gives its full id, none is ErrNotFound, several are ErrAmbiguous.
func (s *Store) ResolveSandboxID(ctx context.Context, prefix string) (string, error) {
	return resolve(ctx, s.db, s.q.ResolveSandboxID, "sandbox", prefix)
}

// SandboxFilter selects sandboxes; zero fields match everything.
type SandboxFilter struct {
	IDPrefix string
	State    SandboxState
	Labels   map[string]string // every pair must match
}

// listArgs binds the optional filters of the List queries.
type listArgs struct {
	IDFrom     string `db:"id_from"`
	IDTo       string `db:"id_to"`
	SandboxID  string `db:"sandbox_id"`
	State      string `db:"state"`
	Labels     string `db:"labels"`
	LabelCount int    `db:"label_count"`
}

func newListArgs(idPrefix, state string, labels map[string]string) (listArgs, error) {
	a := listArgs{State: state, Labels: "{}", LabelCount: len(labels)}
	if idPrefix != "" {
		var err error
		if a.IDFrom, a.IDTo, err = prefixRange(idPrefix); err != nil {
			return a, err
		}
	}
	if len(labels) > 0 {
		b, err := json.Marshal(labels)
		if err != nil {
			return a, err
		}
		a.Labels = string(b)
	}
	return a, nil
}

// selectNamed runs a named :many query into dest.
func (s *Store) selectNamed(ctx context.Context, dest any, query string, arg any) error {
	q, args, err := sqlx.Named(query, arg)
	if err != nil {
		return err
	}
	return translate(s.db.SelectContext(ctx, dest, q, args...))
}

// ListSandboxes returns the sandboxes matching f, oldest first.
func (s *Store) ListSandboxes(ctx context.Context, f SandboxFilter) ([]Sandbox, error) {
	args, err := newListArgs(f.IDPrefix, string(f.State), f.Labels)
	if err != nil {
		return nil, err
	}
	query := s.q.ListSandboxes
	if args.LabelCount > 0 {
		query = s.q.ListSandboxesByLabels
	}
	var out []Sandbox
	if err := s.selectNamed(ctx, &out, query, args); err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	return out, nil
}

// transition binds the UpdateXState queries.
type transition struct {
	ID         string `db:"id"`
	State      string `db:"state"`
	FromStates string `db:"from_states"`
	UpdatedAt  int64  `db:"updated_at"`
}

func newTransition(id, to string, from []string, at int64) transition {
	b, _ := json.Marshal(from) // a []string always marshals
	return transition{ID: id, State: to, FromStates: string(b), UpdatedAt: at}
}

// SetSandboxState moves sandbox id to state to if it is in one of from.
// A missing sandbox is ErrNotFound; one in another state is ErrWrongState.
func (s *Store) SetSandboxState(ctx context.Context, id string, to SandboxState, from ...SandboxState) error {
	fs := make([]string, len(from))
	for i, f := range from {
		fs[i] = string(f)
	}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		err := execOne(ctx, tx, s.q.UpdateSandboxState, newTransition(id, string(to), fs, s.nanos()))
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		var cur Sandbox
		if err := tx.GetContext(ctx, &cur, s.q.GetSandbox, id); err != nil {
			return fmt.Errorf("sandbox %q: %w", id, translate(err))
		}
		return fmt.Errorf("sandbox %s is %s, not one of %v: %w", id, cur.State, from, ErrWrongState)
	})
}

// Ready describes what RunPodSandbox set up for a sandbox.
type Ready struct {
	NetNSPath string
	IPs       []string
	InfraID   string
}

// MarkSandboxReady records a sandbox's side effects and moves it from
// creating to ready. A missing sandbox is ErrNotFound; one in another
// state is ErrWrongState.
func (s *Store) MarkSandboxReady(ctx context.Context, id string, r Ready) error {
	arg := struct {
		ID        string     `db:"id"`
		NetNSPath string     `db:"netns_path"`
		IPs       StringList `db:"ips"`
		InfraID   string     `db:"infra_id"`
		UpdatedAt int64      `db:"updated_at"`
	}{id, r.NetNSPath, StringList(r.IPs), r.InfraID, s.nanos()}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		err := execOne(ctx, tx, s.q.MarkSandboxReady, arg)
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		var cur Sandbox
		if err := tx.GetContext(ctx, &cur, s.q.GetSandbox, id); err != nil {
			return fmt.Errorf("sandbox %q: %w", id, translate(err))
		}
		return fmt.Errorf("sandbox %s is %s, not creating: %w", id, cur.State, ErrWrongState)
	})
}

// DeleteSandbox deletes the sandbox row and releases its name. It returns
// ErrInUse while containers still belong to the sandbox and ErrNotFound if
// there is no such row (callers treat that as done).
func (s *Store) DeleteSandbox(ctx context.Context, id string) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		var sb Sandbox
		if err := tx.GetContext(ctx, &sb, s.q.GetSandbox, id); err != nil {
			return fmt.Errorf("sandbox %q: %w", id, translate(err))
		}
		var n int
		if err := tx.GetContext(ctx, &n, s.q.CountContainersInSandbox, id); err != nil {
			return translate(err)
		}
		if n > 0 {
			return fmt.Errorf("sandbox %s still has %d containers: %w", id, n, ErrInUse)
		}
		if _, err := tx.ExecContext(ctx, s.q.DeleteSandbox, id); err != nil {
			return fmt.Errorf("delete sandbox %s: %w", id, translate(err))
		}
		_, err := tx.ExecContext(ctx, s.q.ReleaseName, KindPod, sb.Name, id)
		return translate(err)
	})
}

// WaitSandbox waits while sandbox id is creating and returns it once it is
// in any other state; a row that disappears meanwhile (the first attempt
// failed and was rolled back) is ErrNotFound. The wait ends with ctx.
func (s *Store) WaitSandbox(ctx context.Context, id string) (Sandbox, error) {
	for {
		sb, err := s.Sandbox(ctx, id)
		if err != nil || sb.State != SandboxCreating {
			return sb, err
		}
		if err := sleep(ctx, settlePoll); err != nil {
			return Sandbox{}, fmt.Errorf("sandbox %s is still being created: %w", id, err)
		}
	}
}

// settlePoll is how often WaitSandbox and WaitContainer look again. A retry
// waits behind a call that takes seconds, so 20 ms is fine-grained enough.
const settlePoll = 20 * time.Millisecond

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
