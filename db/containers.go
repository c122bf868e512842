package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// CreateContainer inserts c in state creating and reserves its name, in
// one transaction, if its sandbox exists (else ErrNotFound) and is ready
// (else ErrWrongState). A name held by a container made from the same
// ConfigHash is kubelet's retry: the holder is returned with
// created=false. A name held otherwise is ErrNameReserved naming the holder.
func (s *Store) CreateContainer(ctx context.Context, c Container) (_ Container, created bool, _ error) {
	now := s.nanos()
	if c.State == "" {
		c.State = ContainerCreating
	}
	if c.CreatedAt == 0 {
		c.CreatedAt = now
	}
	c.UpdatedAt = now
	var existing Container
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		created = false
		var sb Sandbox
		if err := tx.GetContext(ctx, &sb, s.q.GetSandbox, c.SandboxID); err != nil {
			return fmt.Errorf("sandbox %q of container %s: %w", c.SandboxID, c.Name, translate(err))
		}
		holder, err := s.claimName(ctx, tx, KindContainer, c.Name, c.ID)
		if err != nil {
			return err
		}
		if holder != "" {
			if err := tx.GetContext(ctx, &existing, s.q.GetContainer, holder); err != nil || existing.ConfigHash != c.ConfigHash {
				return nameConflict(KindContainer, c.Name, holder)
			}
			return nil
		}
		if sb.State != SandboxReady {
			return fmt.Errorf("sandbox %s is %s, containers need a ready sandbox: %w", sb.ID, sb.State, ErrWrongState)
		}
		if err := s.insertContainer(ctx, tx, c); err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		return Container{}, false, err
	}
	if !created {
		return existing, false, nil
	}
	return c, true, nil
}

// AdoptContainer inserts a container rebuilt by the reconciler, in the
// state it was found, and reserves its name. Its sandbox must exist.
func (s *Store) AdoptContainer(ctx context.Context, c Container) error {
	c.UpdatedAt = s.nanos()
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		var sb Sandbox
		if err := tx.GetContext(ctx, &sb, s.q.GetSandbox, c.SandboxID); err != nil {
			return fmt.Errorf("sandbox %q of container %s: %w", c.SandboxID, c.Name, translate(err))
		}
		holder, err := s.claimName(ctx, tx, KindContainer, c.Name, c.ID)
		if err != nil {
			return err
		}
		if holder != "" && holder != c.ID {
			return nameConflict(KindContainer, c.Name, holder)
		}
		return s.insertContainer(ctx, tx, c)
	})
}

func (s *Store) insertContainer(ctx context.Context, tx *sqlx.Tx, c Container) error {
	_, err := tx.NamedExecContext(ctx, s.q.InsertContainer, c)
	if err = translate(err); err != nil {
		return fmt.Errorf("insert container %s (%s): %w", c.ID, c.Name, err)
	}
	return nil
}

// Container returns the container with that full id, or ErrNotFound.
func (s *Store) Container(ctx context.Context, id string) (Container, error) {
	var c Container
	if err := s.db.GetContext(ctx, &c, s.q.GetContainer, id); err != nil {
		return Container{}, fmt.Errorf("container %q: %w", id, translate(err))
	}
	return c, nil
}

// ResolveContainerID expands a truncated id: one match gives its full id,
// none is ErrNotFound, several are ErrAmbiguous.
func (s *Store) ResolveContainerID(ctx context.Context, prefix string) (string, error) {
	return resolve(ctx, s.db, s.q.ResolveContainerID, "container", prefix)
}

// ContainerFilter selects containers; zero fields match everything.
type ContainerFilter struct {
	IDPrefix  string
	SandboxID string
	State     ContainerState
	Labels    map[string]string // every pair must match
}

// ListContainers returns the containers matching f, oldest first.
func (s *Store) ListContainers(ctx context.Context, f ContainerFilter) ([]Container, error) {
	args, err := newListArgs(f.IDPrefix, string(f.State), f.Labels)
	if err != nil {
		return nil, err
	}
	args.SandboxID = f.SandboxID
	query := s.q.ListContainers
	if args.LabelCount > 0 {
		query = s.q.ListContainersByLabels
	}
	var out []Container
	if err := s.selectNamed(ctx, &out, query, args); err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	return out, nil
}

// SetContainerState moves container id to state to if it is in one of
// from. A missing container is ErrNotFound; another state is ErrWrongState.
func (s *Store) SetContainerState(ctx context.Context, id string, to ContainerState, from ...ContainerState) error {
	fs := make([]string, len(from))
	for i, f := range from {
		fs[i] = string(f)
	}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		err := execOne(ctx, tx, s.q.UpdateContainerState, newTransition(id, string(to), fs, s.nanos()))
		return s.explainMiss(ctx, tx, id, err, fmt.Sprintf("one of %v", from))
	})
}

// explainMiss turns a conditional update that touched no row into
// ErrNotFound (no such container) or ErrWrongState (naming the state).
func (s *Store) explainMiss(ctx context.Context, tx *sqlx.Tx, id string, err error, want string) error {
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	var cur Container
	if err := tx.GetContext(ctx, &cur, s.q.GetContainer, id); err != nil {
		return fmt.Errorf("container %q: %w", id, translate(err))
	}
	return fmt.Errorf("container %s is %s, not %s: %w", id, cur.State, want, ErrWrongState)
}

// Process is what CreateContainer resolved for a container's process.
type Process struct {
	RunUser    string // JSON of the effective uid, gid and groups
	Resources  string // protojson of the CRI resources in force
	StopSignal int
}

// MarkContainerCreated records that the runtime made container id (state
// creating), with what its process resolved to.
func (s *Store) MarkContainerCreated(ctx context.Context, id string, p Process) error {
	arg := struct {
		ID         string `db:"id"`
		RunUser    string `db:"run_user"`
		Resources  string `db:"resources"`
		StopSignal int    `db:"stop_signal"`
		UpdatedAt  int64  `db:"updated_at"`
	}{id, p.RunUser, p.Resources, p.StopSignal, s.nanos()}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		err := execOne(ctx, tx, s.q.MarkContainerCreated, arg)
		return s.explainMiss(ctx, tx, id, err, "creating")
	})
}

// SetContainerResources records the resources of a created or running
// container after UpdateContainerResources changed them.
func (s *Store) SetContainerResources(ctx context.Context, id, resources string) error {
	arg := struct {
		ID        string `db:"id"`
		Resources string `db:"resources"`
		UpdatedAt int64  `db:"updated_at"`
	}{id, resources, s.nanos()}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		err := execOne(ctx, tx, s.q.SetContainerResources, arg)
		return s.explainMiss(ctx, tx, id, err, "created or running")
	})
}

// Started describes a container's process once the runtime started it.
type Started struct {
	PID      int
	PIDStart uint64 // process start time, to tell a recycled pid
	At       int64  // Unix nanoseconds
}

// MarkContainerStarted records that container id (state created) runs.
func (s *Store) MarkContainerStarted(ctx context.Context, id string, st Started) error {
	arg := struct {
		ID        string `db:"id"`
		PID       int    `db:"pid"`
		PIDStart  uint64 `db:"pid_start"`
		StartedAt int64  `db:"started_at"`
		UpdatedAt int64  `db:"updated_at"`
	}{id, st.PID, st.PIDStart, st.At, s.nanos()}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		err := execOne(ctx, tx, s.q.MarkContainerStarted, arg)
		return s.explainMiss(ctx, tx, id, err, "created")
	})
}

// Exit describes how a container ended.
type Exit struct {
	Code    int32
	Reason  string // Completed, Error, OOMKilled, Unknown
	Message string
	At      int64 // Unix nanoseconds
}

// Exit reasons, as kubelet shows them.
const (
	ExitCompleted = "Completed"
	ExitError     = "Error"
	ExitOOMKilled = "OOMKilled"
	ExitUnknown   = "Unknown" // the exit was not seen: no exit file
)

// ExitReason is the reason for an exit with code, OOM-killed or not: the
// one rule the CRI server and the reconciler both record exits by.
func ExitReason(code int32, oomKilled bool) string {
	switch {
	case oomKilled:
		return ExitOOMKilled
	case code != 0:
		return ExitError
	}
	return ExitCompleted
}

// MarkContainerExited records the exit of container id. An exit is kept
// once: a container already exited (or removing) is ErrWrongState, which
// callers that only want "exited" can ignore.
func (s *Store) MarkContainerExited(ctx context.Context, id string, e Exit) error {
	arg := struct {
		ID         string `db:"id"`
		ExitCode   int32  `db:"exit_code"`
		Reason     string `db:"reason"`
		Message    string `db:"message"`
		FinishedAt int64  `db:"finished_at"`
		UpdatedAt  int64  `db:"updated_at"`
	}{id, e.Code, e.Reason, e.Message, e.At, s.nanos()}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		err := execOne(ctx, tx, s.q.MarkContainerExited, arg)
		return s.explainMiss(ctx, tx, id, err, "created, running or unknown")
	})
}

// DeleteContainer deletes the container row and releases its name;
// ErrNotFound if there is no such row (callers treat that as done).
func (s *Store) DeleteContainer(ctx context.Context, id string) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		var c Container
		if err := tx.GetContext(ctx, &c, s.q.GetContainer, id); err != nil {
			return fmt.Errorf("container %q: %w", id, translate(err))
		}
		if _, err := tx.ExecContext(ctx, s.q.DeleteContainer, id); err != nil {
			return fmt.Errorf("delete container %s: %w", id, translate(err))
		}
		_, err := tx.ExecContext(ctx, s.q.ReleaseName, KindContainer, c.Name, id)
		return translate(err)
	})
}

// WaitContainer waits while container id is creating; see WaitSandbox.
func (s *Store) WaitContainer(ctx context.Context, id string) (Container, error) {
	for {
		c, err := s.Container(ctx, id)
		if err != nil || c.State != ContainerCreating {
			return c, err
		}
		if err := sleep(ctx, settlePoll); err != nil {
			return Container{}, fmt.Errorf("container %s is still being created: %w", id, err)
		}
	}
}

// ContainerCount is how many containers are in a state on a handler.
type ContainerCount struct {
	State   ContainerState `db:"state"`
	Handler string         `db:"handler"`
	N       int            `db:"n"`
}

// CountContainers counts containers by state and by their pod's handler.
func (s *Store) CountContainers(ctx context.Context) ([]ContainerCount, error) {
	var out []ContainerCount
	if err := s.db.SelectContext(ctx, &out, s.q.CountContainersByStateAndHandler); err != nil {
		return nil, fmt.Errorf("count containers: %w", err)
	}
	return out, nil
}
