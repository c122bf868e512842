package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crisp-cri/crisp/reconciler"
	"github.com/crisp-cri/crisp/runtimes/network"
	"github.com/crisp-cri/crisp/runtimes/oci"
	"github.com/crisp-cri/crisp/runtimes/pod"
)

// Resources lists the netns pins, IP allocations, pod dirs, overlay
// mounts under the graph root and container cgroups on the node.
func (n *Node) Resources(context.Context) ([]reconciler.Resource, error) {
	mounts, err := readMounts()
	if err != nil {
		return nil, err
	}
	var out []reconciler.Resource
	pins, err := n.cfg.Network.Pins()
	if err != nil {
		return nil, err
	}
	for id, path := range pins {
		out = append(out, reconciler.Resource{Object: reconciler.ObjNetNS, Owner: id, Path: path, Stale: !mounts.at[path]})
	}
	allocs, err := n.cfg.Network.Allocations()
	if err != nil {
		return nil, err
	}
	for ip, owner := range allocs {
		out = append(out, reconciler.Resource{Object: reconciler.ObjIP, Owner: owner, Path: ip})
	}
	ids, err := pod.List(n.cfg.PodRoot)
	if err != nil {
		return nil, fmt.Errorf("list pod dirs: %w", err)
	}
	for _, id := range ids {
		dir := pod.Dir(n.cfg.PodRoot, id)
		r := reconciler.Resource{Object: reconciler.ObjPodDir, Owner: id, Path: dir}
		_, err := pod.LookupInfra(n.cfg.PodRoot, id)
		r.InfraExited = errors.Is(err, pod.ErrInfraExited)
		for _, p := range pod.Pins {
			if _, err := os.Lstat(filepath.Join(dir, p)); err == nil && !mounts.at[filepath.Join(dir, p)] {
				r.Stale = true
			}
		}
		out = append(out, r)
	}
	exits, err := oci.ExitCodes(n.cfg.ExitDir)
	if err != nil {
		return nil, err
	}
	for id := range exits {
		out = append(out, reconciler.Resource{Object: reconciler.ObjExit, Owner: id, Path: filepath.Join(n.cfg.ExitDir, id)})
	}
	infras, err := pod.InfraProcesses(n.cfg.PodRoot)
	if err != nil {
		return nil, err
	}
	for id, inf := range infras {
		out = append(out, reconciler.Resource{Object: reconciler.ObjInfra, Owner: id, Path: strconv.Itoa(inf.PID)})
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
func (n *Node) overlayMounts(m mountTable) ([]reconciler.Resource, error) {
	if n.cfg.GraphRoot == "" {
		return nil, nil
	}
	layers, err := n.cfg.Storage.ContainerLayers()
	if err != nil {
		return nil, err
	}
	var out []reconciler.Resource
	for _, p := range m.overlays {
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

// cgroupName matches the cgroups ocispec gives containers: /crisp/<id>,
// or <parent>/crisp-<id>.
var cgroupName = regexp.MustCompile(`(^|/)crisp[-/]([0-9a-f]{64})$`)

// containerCgroups walks every cgroup hierarchy for crisp's container
// cgroups; each is listed once, by its path within the hierarchies.
func containerCgroups(m mountTable) []reconciler.Resource {
	seen := map[string]bool{}
	var out []reconciler.Resource
	for _, root := range m.cgroups {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
			// A pod's cgroup may hold its containers' (crisp-<id> below it).
			if match := cgroupName.FindStringSubmatch(rel); match != nil && !seen[rel] {
				seen[rel] = true
				out = append(out, reconciler.Resource{Object: reconciler.ObjCgroup, Owner: match[2], Path: rel})
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
		if err := pod.StopInfra(ctx, n.cfg.PodRoot, r.Owner, oci.RemoveCgroup); err != nil {
			return err
		}
		return pod.Remove(n.cfg.PodRoot, r.Owner)
	case reconciler.ObjInfra:
		return pod.KillStray(ctx, n.cfg.PodRoot, r.Owner, oci.RemoveCgroup)
	case reconciler.ObjExit:
		if filepath.Dir(r.Path) != filepath.Clean(n.cfg.ExitDir) {
			return fmt.Errorf("remove %s: not in the exit dir %s", r.Path, n.cfg.ExitDir)
		}
		if err := os.Remove(r.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	case reconciler.ObjPodPins:
		return pod.Unpin(n.cfg.PodRoot, r.Owner)
	case reconciler.ObjMount:
		if _, ok := n.overlayLayer(r.Path); !ok {
			return fmt.Errorf("unmount %s: not an overlay mount under %s", r.Path, n.cfg.GraphRoot)
		}
		return unmount(r.Path)
	case reconciler.ObjCgroup:
		return removeCgroup(r.Path)
	}
	return fmt.Errorf("clean %s %s: unknown kind of resource", r.Object, r.Path)
}

func unmount(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	return nil
}

// removeCgroup removes a container cgroup on every hierarchy; one that
// still holds processes is an error (EBUSY), retried next pass.
func removeCgroup(path string) error {
	if !cgroupName.MatchString(path) {
		return fmt.Errorf("remove cgroup %s: not a container cgroup of crisp's", path)
	}
	m, err := readMounts()
	if err != nil {
		return err
	}
	var errs []error
	for _, root := range m.cgroups {
		if err := os.Remove(filepath.Join(root, path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", filepath.Join(root, path), err))
		}
	}
	return errors.Join(errs...)
}

// mountTable is what Resources needs of /proc/self/mountinfo.
type mountTable struct {
	at       map[string]bool // every mount point
	overlays []string        // overlay mount points
	cgroups  []string        // cgroup (v1 and v2) mount points, one per hierarchy
}

func readMounts() (mountTable, error) {
	m := mountTable{at: map[string]bool{}}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return m, err
	}
	defer f.Close()
	roots := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if !ok || len(pf) < 5 || len(sf) < 1 {
			continue
		}
		point := unescape(pf[4])
		m.at[point] = true
		switch sf[0] {
		case "overlay":
			m.overlays = append(m.overlays, point)
		case "cgroup", "cgroup2":
			if !roots[pf[2]] { // one walk per hierarchy (same device) is enough
				roots[pf[2]] = true
				m.cgroups = append(m.cgroups, point)
			}
		}
	}
	return m, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space, ...).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// TracksIPs: the network's IPAM is host-local, whose allocations Resources lists.
func (n *Node) TracksIPs() bool { return n.cfg.Network.TracksIPs() }
