package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/db/record"
	"github.com/crisp-cri/crisp/reconciler"
	"github.com/crisp-cri/crisp/runtimes/host"
	"github.com/crisp-cri/crisp/runtimes/layout"
	"github.com/crisp-cri/crisp/runtimes/oci"
	"github.com/crisp-cri/crisp/runtimes/pod"
)

// Records lists crisp's container records in storage and the pods that
// have a record in their pod dir. A pod record that cannot be read is
// still listed (dated by its file), so that adopting it fails and is
// reported, and nothing of the pod is cleaned away meanwhile.
func (n *Node) Records(context.Context) ([]reconciler.Record, error) {
	recs, err := n.cfg.Storage.Records()
	if err != nil {
		return nil, err
	}
	var out []reconciler.Record
	for _, r := range recs {
		if r.Meta.Kind != string(db.KindContainer) {
			continue
		}
		out = append(out, reconciler.Record{ID: r.ID, Kind: db.KindContainer, SandboxID: r.Meta.SandboxID,
			Name: r.Meta.Name, Created: r.Meta.Created})
	}
	ids, err := pod.List(n.cfg.Files.Pods())
	if err != nil {
		return nil, fmt.Errorf("list pod dirs: %w", err)
	}
	for _, id := range ids {
		if !record.HasPod(pod.Dir(n.cfg.Files.Pods(), id)) {
			continue
		}
		rec := reconciler.Record{ID: id, Kind: db.KindPod}
		pr, err := n.readPod(id)
		if err != nil {
			if fi, err := os.Stat(pod.Dir(n.cfg.Files.Pods(), id)); err == nil {
				rec.Created = fi.ModTime()
			}
		} else {
			rec.Name, rec.Created, rec.Infra, rec.NetNS = pr.Sandbox.Name, db.Time(pr.Sandbox.CreatedAt), pr.Infra, pr.NetNS
		}
		out = append(out, rec)
	}
	return out, nil
}

// readPod reads pod id's record, which must describe that pod.
func (n *Node) readPod(id string) (record.Pod, error) {
	pr, err := record.ReadPod(pod.Dir(n.cfg.Files.Pods(), id))
	if err != nil {
		return pr, notFound(err)
	}
	if pr.Sandbox.ID != id {
		return pr, fmt.Errorf("pod record of %s describes %q (%q)", id, pr.Sandbox.ID, pr.Sandbox.Name)
	}
	return pr, nil
}

// Rebuild reads back the row of a pod or container record. The state is
// the reconciler's to set, from the runtime.
func (n *Node) Rebuild(_ context.Context, rec reconciler.Record) (reconciler.Rebuilt, error) {
	if rec.Kind == db.KindPod {
		sb, err := n.rebuildSandbox(rec.ID)
		return reconciler.Rebuilt{Sandbox: &sb}, err
	}
	c, err := n.rebuildContainer(rec.ID)
	return reconciler.Rebuilt{Container: &c}, err
}

func (n *Node) rebuildSandbox(id string) (db.Sandbox, error) {
	pr, err := n.readPod(id)
	if err != nil {
		return db.Sandbox{}, err
	}
	sb := pr.Row()
	sb.State = db.SandboxNotReady
	if pr.Infra {
		sb.InfraID = id
	}
	if pr.NetNS {
		pins, err := n.cfg.Network.Pins()
		if err != nil {
			return sb, err
		}
		sb.NetNSPath = pins[id]
	}
	allocs, err := n.cfg.Network.Allocations()
	if err != nil {
		return sb, err
	}
	for ip, owner := range allocs {
		if owner == id {
			sb.IPs = append(sb.IPs, ip)
		}
	}
	sortIPs(sb.IPs)
	return sb, nil
}

// sortIPs puts IPv4 addresses first, as CNI's result had them.
func sortIPs(ips []string) {
	sort.Slice(ips, func(i, j int) bool {
		a, _ := netip.ParseAddr(ips[i])
		b, _ := netip.ParseAddr(ips[j])
		if a.Is4() != b.Is4() {
			return a.Is4()
		}
		return a.Less(b)
	})
}

func (n *Node) rebuildContainer(id string) (db.Container, error) {
	var c db.Container
	rec, err := n.cfg.Storage.Record(id)
	if err != nil {
		return c, notFound(err)
	}
	spec, err := n.readSpec(id)
	if err != nil {
		return c, err
	}
	cr, err := record.ReadContainer(spec.Annotations)
	if err != nil {
		return c, fmt.Errorf("config.json of container %s: %w", id, err)
	}
	c = cr.Row(id)
	c.CreatedAt = rec.Meta.Created.UnixNano()
	files := n.cfg.Files.Container(id)
	if pid, err := oci.InitPID(files); err == nil {
		// Init was spawned at create; its start is the closest to started_at
		// that the node keeps.
		if ticks, at, ok := host.ProcStartTime(pid); ok {
			c.PIDStart, c.StartedAt = ticks, at.UnixNano()
		}
	}
	if fi, err := os.Stat(files.ExitFile); err == nil {
		c.FinishedAt = fi.ModTime().UnixNano()
	}
	return c, nil
}

// readSpec reads the container's config.json: the copy beside its storage
// record, which outlives a reboot, else the bundle's.
func (n *Node) readSpec(id string) (*specs.Spec, error) {
	var paths []string
	if dir, err := n.cfg.Storage.ContainerDir(id); err == nil {
		paths = append(paths, filepath.Join(dir, layout.SpecFileName))
	}
	paths = append(paths, n.cfg.Files.Container(id).Spec())
	var errs []error
	for _, p := range paths {
		spec, err := layout.ReadSpec(p)
		if errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		return spec, err
	}
	return nil, fmt.Errorf("config.json of container %s: %w", id, errors.Join(errs...))
}
