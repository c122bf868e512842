// Package reconciler makes the database agree with what exists on the node:
// Observe gathers a Snapshot, the pure Diff turns it into Actions, Apply
// carries them out. It imports db; the node itself (container storage and
// OCI runtimes) is reached through the small interfaces below, so that
// this package knows nothing of runc, CNI or go.podman.io/storage.
package reconciler

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/crisp-cri/crisp/db"
)

// Record is one of crisp's records on the node from which a row can be
// rebuilt: a container's storage record, or a pod's record in its pod dir.
type Record struct {
	ID        string
	Kind      db.NameKind // pod or container
	SandboxID string      // the pod a container belongs to
	Name      string
	Created   time.Time
	Infra     bool // pods: the pod has an infra container (whose id is the pod's)
	NetNS     bool // pods: the pod has a network namespace of its own
}

// LiveStatus is what an OCI runtime says of a container.
type LiveStatus string

// Runtime states as OCI runtimes report them.
const (
	LiveCreated LiveStatus = "created"
	LiveRunning LiveStatus = "running"
	LivePaused  LiveStatus = "paused"
	LiveStopped LiveStatus = "stopped"
)

// Live is one container that an OCI runtime knows, under one handler.
type Live struct {
	ID       string
	Handler  string
	Status   LiveStatus
	PID      int
	PIDStart uint64 // the running pid's start time (see db.Started)
	// MonitorAlive: the container's monitor (conmon) still runs: it will
	// record the exit; for a stopped container, it is about to.
	MonitorAlive bool
}

// Storage is the reconciler's view of container storage. Implementations
// report a missing object with an error wrapping db.ErrNotFound.
type Storage interface {
	// Records lists crisp's records (never anyone else's).
	Records(ctx context.Context) ([]Record, error)
	// Rebuild reads back the row a record was made from (adopt).
	Rebuild(ctx context.Context, rec Record) (Rebuilt, error)
	// Remove unmounts and deletes a record, and what crisp keeps of the
	// container beside it (bundle dir, exit file); a missing one is not an
	// error.
	Remove(ctx context.Context, id string) error
}

// Rebuilt is a row recovered from storage: exactly one field is set.
type Rebuilt struct {
	Sandbox   *db.Sandbox
	Container *db.Container
}

// Runtime is the reconciler's view of every configured OCI runtime.
type Runtime interface {
	// List returns the containers of every handler's state root.
	List(ctx context.Context) ([]Live, error)
	// ExitCodes returns the exit codes monitors recorded, by container id.
	ExitCodes(ctx context.Context) (map[string]int32, error)
	// Destroy kills and deletes a container and its monitor; a missing one
	// is not an error.
	Destroy(ctx context.Context, handler, id string) error
}

// Snapshot is everything Diff looks at, gathered outside any transaction.
type Snapshot struct {
	Sandboxes  []db.Sandbox
	Containers []db.Container
	Names      []db.Name
	Stored     map[string]Record // crisp's records (storage, pod dirs), by id; nil = not observed
	Live       map[string]Live   // runtime containers of all handlers, by id; nil = not observed
	Exits      map[string]int32  // monitor exit codes, by container id
	Resources  []Resource        // what else crisp made on the node; nil = not observed
	// IPsObserved: Resources lists every IP allocation (the network's IPAM
	// is host-local), so a pod without one has really lost its address.
	IPsObserved bool
	// Rebooted: the machine booted since the last pass, so no process of
	// any pod or container survived, whatever the files say.
	Rebooted bool
}

// Store is what the reconciler needs of the database.
type Store interface {
	Sandbox(ctx context.Context, id string) (db.Sandbox, error)
	ListSandboxes(ctx context.Context, f db.SandboxFilter) ([]db.Sandbox, error)
	ListContainers(ctx context.Context, f db.ContainerFilter) ([]db.Container, error)
	Names(ctx context.Context) ([]db.Name, error)
	AdoptSandbox(ctx context.Context, sb db.Sandbox) error
	AdoptContainer(ctx context.Context, c db.Container) error
	DeleteSandbox(ctx context.Context, id string) error
	DeleteContainer(ctx context.Context, id string) error
	SetSandboxState(ctx context.Context, id string, to db.SandboxState, from ...db.SandboxState) error
	SetContainerState(ctx context.Context, id string, to db.ContainerState, from ...db.ContainerState) error
	MarkContainerStarted(ctx context.Context, id string, st db.Started) error
	MarkContainerExited(ctx context.Context, id string, e db.Exit) error
	ReleaseName(ctx context.Context, kind db.NameKind, name, owner string) error
	AppendEvent(ctx context.Context, e db.Event) error
	RecordReconcileRun(ctx context.Context, r db.ReconcileRun) error
	NodeValue(ctx context.Context, key string) (string, error)
	SetNodeValue(ctx context.Context, key, value string) error
}

// Observe gathers a snapshot. The node's views (resources, runtime,
// storage) are read together and the database after them: every object
// seen already has its row (rows are made first), so an object being
// created can never look like an orphan. What changes while Observe runs
// is young, and Diff leaves young objects alone. A nil storage, runtime or leftovers (crispd without them)
// leaves Stored, Live or Resources nil: not observed, rather than empty.
func Observe(ctx context.Context, st Store, storage Storage, rt Runtime, left Leftovers) (Snapshot, error) {
	var s Snapshot
	// At once: at 500 containers runc's list alone takes a quarter second.
	var wg sync.WaitGroup
	var errRes, errLive, errExits, errRecs error
	var lives []Live
	var recs []Record
	if left != nil && rt != nil && storage != nil {
		if t, ok := left.(interface{ TracksIPs() bool }); ok {
			s.IPsObserved = t.TracksIPs()
		}
		wg.Go(func() {
			if s.Resources, errRes = left.Resources(ctx); errRes == nil && s.Resources == nil {
				s.Resources = []Resource{} // observed, and empty
			}
		})
	}
	if rt != nil && storage != nil {
		wg.Go(func() { lives, errLive = rt.List(ctx) })
		wg.Go(func() { s.Exits, errExits = rt.ExitCodes(ctx) })
		wg.Go(func() { recs, errRecs = storage.Records(ctx) })
	}
	wg.Wait()
	switch {
	case errRes != nil:
		return s, fmt.Errorf("list node resources: %w", errRes)
	case errLive != nil:
		return s, fmt.Errorf("list runtime containers: %w", errLive)
	case errExits != nil:
		return s, fmt.Errorf("read exit codes: %w", errExits)
	case errRecs != nil:
		return s, fmt.Errorf("list storage records: %w", errRecs)
	}
	if rt != nil && storage != nil {
		s.Live = make(map[string]Live, len(lives))
		for _, l := range lives {
			s.Live[l.ID] = l
		}
		s.Stored = make(map[string]Record, len(recs))
		for _, r := range recs {
			s.Stored[r.ID] = r
		}
	}
	var err error
	if s.Sandboxes, err = st.ListSandboxes(ctx, db.SandboxFilter{}); err != nil {
		return s, err
	}
	if s.Containers, err = st.ListContainers(ctx, db.ContainerFilter{}); err != nil {
		return s, err
	}
	if s.Names, err = st.Names(ctx); err != nil {
		return s, err
	}
	return s, nil
}
