// Package node is the reconciler's view of a real node: it implements
// reconciler.Storage, Runtime and Leftovers over go.podman.io/storage,
// every configured OCI runtime, the pod dirs, and the network (netns pins,
// CNI, host-local allocations), plus the overlay mounts and cgroups crisp's
// containers leave. It rebuilds rows from the records crisp wrote on the
// node (db/record): pods from their pod dir's sandbox.json, containers from
// their config.json annotations.
//
// It imports the runtimes packages, db, db/record and reconciler; never cri
// or gRPC.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/reconciler"
	"github.com/crisp-cri/crisp/runtimes/host"
	"github.com/crisp-cri/crisp/runtimes/layout"
	"github.com/crisp-cri/crisp/runtimes/network"
	"github.com/crisp-cri/crisp/runtimes/oci"
	"github.com/crisp-cri/crisp/runtimes/storage"
)

// Config is where crisp keeps things on the node.
type Config struct {
	Storage   *storage.Store
	Runtimes  map[string]*oci.Runtime // by handler name
	Network   *network.Manager
	Files     layout.Layout // where containers' and pods' files are
	GraphRoot string        // storage graph root, where overlay mounts live
	Log       *slog.Logger
}

// Node implements the reconciler's views. It holds no state of its own
// and is safe for concurrent use.
type Node struct{ cfg Config }

// New returns the node described by cfg.
func New(cfg Config) *Node {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Node{cfg: cfg}
}

var (
	_ reconciler.Storage   = (*Node)(nil)
	_ reconciler.Runtime   = (*Node)(nil)
	_ reconciler.Leftovers = (*Node)(nil)
)

// List returns the containers of every handler's root.
func (n *Node) List(ctx context.Context) ([]reconciler.Live, error) {
	var out []reconciler.Live
	for name, rt := range n.cfg.Runtimes {
		states, err := rt.List(ctx)
		if err != nil {
			return nil, fmt.Errorf("runtime %s: %w", name, err)
		}
		for _, st := range states {
			l := reconciler.Live{ID: st.ID, Handler: name, Status: reconciler.LiveStatus(st.Status), PID: st.PID,
				MonitorAlive: oci.MonitorAlive(n.cfg.Files.Container(st.ID))}
			if l.Status == reconciler.LiveRunning {
				l.PIDStart = host.ProcStart(st.PID)
			}
			out = append(out, l)
		}
	}
	return out, nil
}

// ExitCodes returns what the monitors wrote in the exit dir.
func (n *Node) ExitCodes(context.Context) (map[string]int32, error) {
	return oci.ExitCodes(n.cfg.Files)
}

// Destroy kills and deletes container id in handler's runtime, kills its
// monitor, and removes its bundle and exit file.
func (n *Node) Destroy(ctx context.Context, handler, id string) error {
	rt, ok := n.cfg.Runtimes[handler]
	if !ok {
		return fmt.Errorf("runtime handler %q is not configured", handler)
	}
	if err := rt.Kill(ctx, id, syscall.SIGKILL, true); err != nil && !errors.Is(err, oci.ErrNotFound) && !errors.Is(err, oci.ErrNotRunning) {
		n.cfg.Log.Debug("kill before delete", slog.String("container_id", id), slog.Any("err", err))
	}
	if err := rt.Delete(ctx, id, true); err != nil && !errors.Is(err, oci.ErrNotFound) {
		return err
	}
	return oci.RemoveLeftovers(n.cfg.Files.Container(id))
}

// Remove deletes container id's storage record (unmounting its rootfs)
// and its bundle.
func (n *Node) Remove(_ context.Context, id string) error {
	if err := n.cfg.Storage.RemoveContainer(id); err != nil {
		return err
	}
	return oci.RemoveLeftovers(n.cfg.Files.Container(id))
}

// notFound makes the runtimes' missing-object errors the reconciler's.
func notFound(err error) error {
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %v", db.ErrNotFound, err)
	}
	return err
}
