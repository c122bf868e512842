package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/crisp-cri/crisp/reconciler"
	"github.com/crisp-cri/crisp/runtimes/host"
	"github.com/crisp-cri/crisp/runtimes/network"
	"github.com/crisp-cri/crisp/runtimes/oci"
	"github.com/crisp-cri/crisp/runtimes/pod"
)

// Resources lists the netns pins, IP allocations, pod dirs, overlay
// mounts under the graph root and container cgroups on the node.
func (n *Node) Resources(context.Context) ([]reconciler.Resource, error) {
	mounts, err := host.ReadMounts()
	if err != nil {
		return nil, err
	}
	var out []reconciler.Resource
	pins, err := n.cfg.Network.Pins()
	if err != nil {
		return nil, err
	}
	for id, path := range pins {
		out = append(out, reconciler.Resource{Object: reconciler.ObjNetNS, Owner: id, Path: path, Stale: !mounts.At[path]})
	}
	allocs, err := n.cfg.Network.Allocations()
	if err != nil {
		return nil, err
	}
	for ip, owner := range allocs {
		out = append(out, reconciler.Resource{Object: reconciler.ObjIP, Owner: owner, Path: ip})
	}
	ids, err := pod.List(n.cfg.Files.Pods())
	if err != nil {
		return nil, fmt.Errorf("list pod dirs: %w", err)
	}
	for _, id := range ids {
		dir := pod.Dir(n.cfg.Files.Pods(), id)
		r := reconciler.Resource{Object: reconciler.ObjPodDir, Owner: id, Path: dir}
		_, err := pod.LookupInfra(n.cfg.Files.Pods(), id)
		r.InfraExited = errors.Is(err, pod.ErrInfraExited)
		for _, p := range pod.Pins {
			if _, err := os.Lstat(filepath.Join(dir, p)); err == nil && !mounts.At[filepath.Join(dir, p)] {
				r.Stale = true
			}
		}
		out = append(out, r)
	}
	exits, err := oci.ExitCodes(n.cfg.Files)
	if err != nil {
		return nil, err
	}
	for id := range exits {
		out = append(out, reconciler.Resource{Object: reconciler.ObjExit, Owner: id, Path: n.cfg.Files.Container(id).ExitFile})
	}
	infras, err := pod.InfraProcesses(n.cfg.Files.Pods())
	if err != nil {
		return nil, err
	}
	for id, inf := range infras {
		out = append(out, reconciler.Resource{Object: reconciler.ObjInfra, Owner: id, Path: strconv.Itoa(inf.PID)})
	}
	volumes, err := n.cfg.Storage.ImageVolumes()
	if err != nil {
		return nil, err
	}
	for id, owner := range volumes {
		out = append(out, reconciler.Resource{Object: reconciler.ObjImageVolume, Owner: owner, Path: id})
	}
	overlays, err := n.overlayMounts(mounts)
	if err != nil {
		return nil, err
	}
	out = append(out, overlays...)
	return append(out, containerCgroups(mounts)...), nil
}

// overlayMounts are the merged dirs mounted under the graph root, each
// owned by the container whose layer it is, or by none.
func (n *Node) overlayMounts(m host.Mounts) ([]reconciler.Resource, error) {
	if n.cfg.GraphRoot == "" {
		return nil, nil
	}
	layers, err := n.cfg.Storage.ContainerLayers()
	if err != nil {
		return nil, err
	}
	var out []reconciler.Resource
	for _, p := range m.Overlays {
		if layer, ok := n.overlayLayer(p); ok {
			out = append(out, reconciler.Resource{Object: reconciler.ObjMount, Owner: layers[layer], Path: p})
		}
	}
	return out, nil
}

// overlayLayer returns the layer of <graph root>/overlay/<layer>/merged.
func (n *Node) overlayLayer(path string) (string, bool) {
	dir := filepath.Join(n.cfg.GraphRoot, "overlay")
	rel, err := filepath.Rel(dir, path)
	if err != nil || filepath.Base(rel) != "merged" || strings.Count(rel, "/") != 1 || strings.HasPrefix(rel, "..") {
		return "", false
	}
	return filepath.Dir(rel), true
}

// cgroupName matches the cgroups ocispec gives containers, /crisp/<id>
// or <parent>/crisp-<id>, and those their monitors get,
// <parent>/crisp-monitor-<id> (oci.MonitorCgroup): the last group is the
// owner's id.
var cgroupName = regexp.MustCompile(`(^|/)(crisp-monitor-|crisp[-/])([0-9a-f]{64})$`)

// containerCgroups walks every cgroup hierarchy for crisp's container
// and monitor cgroups; each is listed once, by its path within the
// hierarchies (a hybrid host's runc makes the same path in the v1
// hierarchies and in the cgroup2 one). Hierarchies hidden by a later
// mount are not in m (see host.Mounts).
func containerCgroups(m host.Mounts) []reconciler.Resource {
	seen := map[string]bool{}
	var out []reconciler.Resource
	for _, root := range m.Cgroups {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
			// A pod's cgroup may hold its containers' (crisp-<id> below it).
			if match := cgroupName.FindStringSubmatch(rel); match != nil && !seen[rel] {
				seen[rel] = true
				out = append(out, reconciler.Resource{Object: reconciler.ObjCgroup, Owner: match[3], Path: rel})
			}
			return nil
		})
	}
	return out
}

// Clean removes one left-over resource.
func (n *Node) Clean(ctx context.Context, r reconciler.Resource) error {
	switch r.Object {
	case reconciler.ObjNetNS:
		// DEL first: it finds the pod's interfaces through the netns (a
		// stale pin that holds none is handled by Teardown).
		if err := n.cfg.Network.Teardown(ctx, network.Attachment{PodID: r.Owner, NetNS: r.Path}); err != nil {
			return err
		}
		return n.cfg.Network.RemoveNetNS(r.Path)
	case reconciler.ObjIP:
		return n.cfg.Network.Teardown(ctx, network.Attachment{PodID: r.Owner})
	case reconciler.ObjPodDir:
		// A runc pod's infra process lives as long as it is not killed.
		if err := pod.StopInfra(ctx, n.cfg.Files.Pods(), r.Owner); err != nil {
			return err
		}
		return pod.Remove(n.cfg.Files.Pods(), r.Owner)
	case reconciler.ObjInfra:
		return pod.KillStray(ctx, n.cfg.Files.Pods(), r.Owner)
	case reconciler.ObjExit:
		if r.Path != n.cfg.Files.Container(r.Owner).ExitFile {
			return fmt.Errorf("remove %s: not the exit file of %s", r.Path, r.Owner)
		}
		if err := os.Remove(r.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	case reconciler.ObjPodPins:
		return pod.Unpin(n.cfg.Files.Pods(), r.Owner)
	case reconciler.ObjMount:
		if _, ok := n.overlayLayer(r.Path); !ok {
			return fmt.Errorf("unmount %s: not an overlay mount under %s", r.Path, n.cfg.GraphRoot)
		}
		return host.Unmount(r.Path)
	case reconciler.ObjCgroup:
		m, err := host.ReadMounts()
		if err != nil {
			return err
		}
		return removeCgroup(m, r.Path)
	case reconciler.ObjImageVolume:
		volumes, err := n.cfg.Storage.ImageVolumes()
		if err != nil {
			return err
		}
		if owner, ok := volumes[r.Path]; !ok || owner != r.Owner {
			return fmt.Errorf("remove image volume %s: not a record of an image volume of %s", r.Path, r.Owner)
		}
		return n.cfg.Storage.RemoveContainer(r.Path)
	}
	return fmt.Errorf("clean %s %s: unknown kind of resource", r.Object, r.Path)
}

// removeCgroup removes a container or monitor cgroup on every hierarchy
// of m; one that still holds processes is an error (EBUSY), retried next
// pass.
func removeCgroup(m host.Mounts, path string) error {
	if !cgroupName.MatchString(path) {
		return fmt.Errorf("remove cgroup %s: not a container cgroup of crisp's", path)
	}
	return m.RemoveCgroup(path)
}

// TracksIPs: the network's IPAM is host-local, whose allocations Resources lists.
func (n *Node) TracksIPs() bool { return n.cfg.Network.TracksIPs() }
