package chaos

import (
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
)

// violation is one disagreement between crisp's sources of truth, or one
// promise to a client broken by a crash.
type violation struct {
	kind   string
	msg    string
	object string // the full id of the pod or container it is about, when one is
}

// Kinds of violation, one per pair of things that must agree.
const (
	kindRowStuck = "row-stuck" // a creating/removing row survived restart and reconcile
	kindName     = "name"      // names table ⇄ rows
	kindStorage  = "storage"   // container storage records ⇄ rows
	kindRuntime  = "runtime"   // runc/runsc containers ⇄ rows and their states
	kindExitCode = "exit-code" // an exited row ⇄ the exit the monitor recorded
	kindMonitor  = "monitor"   // monitor processes ⇄ rows and running containers
	kindInfra    = "infra"     // infra processes ⇄ pods and their records
	kindNetNS    = "netns"     // netns pins ⇄ ready pods
	kindIPAM     = "ipam"      // host-local allocations ⇄ ready pods' IPs
	kindCNICache = "cni-cache" // libcni's cached results ⇄ ready pods
	kindFiles    = "files"     // pod dirs, bundles, exit files ⇄ rows
	kindMount    = "mount"     // mounts under crisp's dirs ⇄ rows
	kindCgroup   = "cgroup"    // container cgroups ⇄ rows
	kindSurvivor = "survivor"  // a container running before the kill is not running after
	kindRetry    = "retry"     // kubelet's retry of the interrupted call failed
	kindOpError  = "op-error"  // a CRI call failed with no crash in the way
	kindCrash    = "crash"     // crispd died with no kill
	kindFailpt   = "failpoint" // an armed failpoint was never reached
	kindRecon    = "reconcile" // crispctl reconcile failed, or an action did
	kindObserve  = "observe"   // the node could not be read
)

// check compares every source of truth in n with the others. Cgroups are
// shared by every crisp on the node, so only those of ids that mine says
// are this daemon's are checked.
func (n node) check(runDir, stateDir string, mine func(id string) bool) []violation {
	var vs violations
	n.checkRows(&vs)
	n.checkNames(&vs)
	n.checkStorage(&vs)
	n.checkRuntimes(&vs)
	n.checkProcesses(&vs)
	n.checkNetwork(&vs)
	n.checkFiles(&vs)
	n.checkCgroups(&vs, mine)
	n.checkMounts(&vs, runDir, stateDir)
	return vs
}

// violations collects what the checks find.
type violations []violation

func (vs *violations) add(kind, format string, args ...any) {
	*vs = append(*vs, violation{kind: kind, msg: fmt.Sprintf(format, args...)})
}

// addFor is add for a violation about one object, whose log lines the
// report shows.
func (vs *violations) addFor(object, kind, format string, args ...any) {
	*vs = append(*vs, violation{kind: kind, msg: fmt.Sprintf(format, args...), object: object})
}

// infraOf maps infra container ids (a runsc pod's sandbox) to their pods.
func (n node) infraOf() map[string]sandboxRow {
	out := map[string]sandboxRow{}
	for _, s := range n.sandboxes {
		if s.InfraID != "" {
			out[s.InfraID] = s
		}
	}
	return out
}

// hasRow tells a runtime id that has a row: a container's, or a pod's for
// its infra container.
func (n node) hasRow(id string) bool {
	_, c := n.containers[id]
	_, i := n.infraOf()[id]
	return c || i
}

// checkRows: no row is left creating or removing.
func (n node) checkRows(vs *violations) {
	for _, id := range sortedKeys(n.sandboxes) {
		if s := n.sandboxes[id]; !settled(s.State) {
			vs.add(kindRowStuck, "pod %s (%s) is still %s after restart and reconcile", short(id), s.Name, s.State)
		}
	}
	for _, id := range sortedKeys(n.containers) {
		if c := n.containers[id]; !settled(c.State) {
			vs.add(kindRowStuck, "container %s (%s) is still %s after restart and reconcile", short(id), c.Name, c.State)
		}
	}
}

// checkNames, for rows in any state: every reservation has its owner's
// row, every row holds its name.
func (n node) checkNames(vs *violations) {
	reserved := map[string]string{}
	for _, nm := range n.names {
		reserved[nm.Kind+"/"+nm.Name] = nm.OwnerID
		_, pod := n.sandboxes[nm.OwnerID]
		_, ctr := n.containers[nm.OwnerID]
		if nm.Kind == "pod" && !pod || nm.Kind == "container" && !ctr {
			vs.add(kindName, "%s name %q is reserved for %s, which has no %s row", nm.Kind, nm.Name, short(nm.OwnerID), nm.Kind)
		}
	}
	for _, id := range sortedKeys(n.sandboxes) {
		if s := n.sandboxes[id]; reserved["pod/"+s.Name] != id {
			vs.add(kindName, "pod %s (%s) does not hold its name", short(id), s.Name)
		}
	}
	for _, id := range sortedKeys(n.containers) {
		if c := n.containers[id]; reserved["container/"+c.Name] != id {
			vs.add(kindName, "container %s (%s) does not hold its name", short(id), c.Name)
		}
	}
}

// checkStorage: a record for every container row, a row for every record.
func (n node) checkStorage(vs *violations) {
	for _, id := range sortedKeys(n.stored) {
		rec := n.stored[id]
		_, pod := n.sandboxes[id]
		_, ctr := n.containers[id]
		switch {
		case rec.Kind == "container" && !ctr:
			vs.add(kindStorage, "storage record %s (a container of pod %s) has no row", short(id), short(rec.SandboxID))
		case rec.Kind == "pod" && !pod:
			vs.add(kindStorage, "storage record %s (a pod) has no row", short(id))
		case rec.Kind != "container" && rec.Kind != "pod":
			vs.add(kindStorage, "storage record %s has crisp metadata of kind %q", short(id), rec.Kind)
		}
	}
	for _, id := range sortedKeys(n.containers) {
		if c := n.containers[id]; settled(c.State) && n.stored[id].ID == "" {
			vs.add(kindStorage, "container %s (%s, %s) has no storage record", short(id), c.Name, c.State)
		}
	}
}

// checkRuntimes: nothing in a runtime without a row; every row in the
// state it says, with the exit its monitor recorded.
func (n node) checkRuntimes(vs *violations) {
	statusOf := func(id string) string {
		if l, ok := n.live[id]; ok {
			return l.Status
		}
		return "absent"
	}
	for _, id := range sortedKeys(n.live) {
		if l := n.live[id]; !n.hasRow(id) {
			vs.add(kindRuntime, "%s container %s (%s, pid %d) has no row", l.Handler, short(id), l.Status, l.PID)
		}
	}
	for _, id := range sortedKeys(n.containers) {
		c := n.containers[id]
		want := map[string][]string{"created": {"created"}, "running": {"running"}, "exited": {"stopped", "absent"}}[c.State]
		switch {
		case want != nil && !slices.Contains(want, statusOf(id)):
			vs.add(kindRuntime, "container %s (%s) is %s in the database but %s in the runtime", short(id), c.Name, c.State, statusOf(id))
		case c.State == "running" && c.PID != n.live[id].PID:
			vs.add(kindRuntime, "container %s (%s) runs as pid %d, but its row says pid %d", short(id), c.Name, n.live[id].PID, c.PID)
		}
		// A container that ran exits as its command does, never with a
		// made-up code.
		if want := expectedExits(c.KubeName, n.signalled[c.ID] || n.signalled[c.SandboxID]); c.State == "exited" && c.StartedAt != 0 && want != nil &&
			(c.ExitCode == nil || !slices.Contains(want, *c.ExitCode)) {
			vs.addFor(id, kindExitCode, "container %s (%s) exited with code %s; its command can only exit with %v", short(id), c.Name, fmtCode(c.ExitCode), want)
		}
	}
	infraOf := n.infraOf()
	for _, id := range sortedKeys(infraOf) {
		s := infraOf[id]
		want := map[string][]string{"ready": {"running"}, "notready": {"stopped", "absent"}}[s.State]
		if want != nil && !slices.Contains(want, statusOf(id)) {
			vs.add(kindRuntime, "pod %s (%s) is %s but its infra is %s in the runtime", short(s.ID), s.Name, s.State, statusOf(id))
		}
	}
}

// checkProcesses: a monitor for every running container and none without
// a row; an infra process exactly for the ready pods that record one.
func (n node) checkProcesses(vs *violations) {
	for _, id := range sortedKeys(n.monitors) {
		if !n.hasRow(id) {
			vs.add(kindMonitor, "monitor (pid %d) watches %s, which has no row", n.monitors[id], short(id))
		}
	}
	for _, id := range sortedKeys(n.live) {
		if l := n.live[id]; l.Status == "running" && n.monitors[id] == 0 {
			vs.add(kindMonitor, "%s container %s (pid %d) runs with no monitor: its exit would go unrecorded", l.Handler, short(id), l.PID)
		}
	}
	for _, id := range sortedKeys(n.infras) {
		pid := n.infras[id]
		s, ok := n.sandboxes[id]
		rec, recorded := n.infraRecords[id]
		switch {
		case !ok:
			vs.add(kindInfra, "infra process %d of pod %s runs, but the pod has no row", pid, short(id))
		case s.State == "notready":
			vs.add(kindInfra, "infra process %d of pod %s (%s) still runs after the pod stopped", pid, short(id), s.Name)
		case settled(s.State) && !recorded:
			vs.add(kindInfra, "infra process %d of pod %s (%s) runs, but the pod dir has no record of it", pid, short(id), s.Name)
		case settled(s.State) && rec.pid != pid:
			vs.add(kindInfra, "infra process %d of pod %s (%s) runs, but the pod dir records pid %d", pid, short(id), s.Name, rec.pid)
		}
	}
	for _, id := range sortedKeys(n.infraRecords) {
		if s, ok := n.sandboxes[id]; ok && s.State == "ready" && !n.infraRecords[id].alive {
			vs.add(kindInfra, "pod %s (%s) is ready, but its infra process (pid %d) is gone", short(id), s.Name, n.infraRecords[id].pid)
		}
	}
}

// checkNetwork: a pinned namespace, an address and a CNI result for every
// ready pod with a network of its own, and for nothing else.
func (n node) checkNetwork(vs *violations) {
	for _, id := range sortedKeys(n.pins) {
		s, ok := n.sandboxes[id]
		switch {
		case !ok:
			vs.add(kindNetNS, "netns pin %s has no pod row", short(id))
		case s.State == "notready":
			vs.add(kindNetNS, "netns pin of pod %s (%s) is left after the pod stopped", short(id), s.Name)
		case !n.pins[id]:
			vs.add(kindNetNS, "netns pin of pod %s (%s) is a file, not a mount", short(id), s.Name)
		}
	}
	for _, id := range sortedKeys(n.sandboxes) {
		s := n.sandboxes[id]
		if s.State != "ready" || s.NetNSPath == "" {
			continue
		}
		if _, ok := n.pins[filepath.Base(s.NetNSPath)]; !ok {
			vs.add(kindNetNS, "ready pod %s (%s) has no netns pin", short(id), s.Name)
		}
		var ips []string
		json.Unmarshal([]byte(s.IPs), &ips)
		if len(ips) == 0 {
			vs.add(kindIPAM, "ready pod %s (%s) has no IP in its row", short(id), s.Name)
		}
		for _, ip := range ips {
			switch owner := n.ips[ip]; owner {
			case id:
			case "":
				vs.add(kindIPAM, "ready pod %s (%s) has IP %s in its row, but host-local has not allocated it", short(id), s.Name, ip)
			default:
				vs.add(kindIPAM, "ready pod %s (%s) has IP %s in its row, but host-local has it for %s", short(id), s.Name, ip, short(owner))
			}
		}
		if !n.cniCache[id] {
			vs.add(kindCNICache, "ready pod %s (%s) has no cached CNI result: it could not be torn down", short(id), s.Name)
		}
	}
	for _, ip := range sortedKeys(n.ips) {
		owner := n.ips[ip]
		s, ok := n.sandboxes[owner]
		switch {
		case !ok:
			vs.add(kindIPAM, "IP %s is allocated to %s, which has no pod row", ip, short(owner))
		case s.State == "notready":
			vs.add(kindIPAM, "IP %s is still allocated to pod %s (%s), which stopped", ip, short(owner), s.Name)
		case !strings.Contains(s.IPs, `"`+ip+`"`):
			vs.add(kindIPAM, "IP %s is allocated to pod %s (%s), whose row has %s", ip, short(owner), s.Name, s.IPs)
		}
	}
	for _, id := range sortedKeys(n.cniCache) {
		if s, ok := n.sandboxes[id]; !ok {
			vs.add(kindCNICache, "CNI result of %s is cached, but it has no pod row", short(id))
		} else if s.State == "notready" {
			vs.add(kindCNICache, "CNI result of pod %s (%s) is still cached after the pod stopped", short(id), s.Name)
		}
	}
}

// checkFiles: pod dirs, bundles and exit files under the run dir ⇄ rows.
func (n node) checkFiles(vs *violations) {
	for _, id := range sortedKeys(n.podDirs) {
		if _, ok := n.sandboxes[id]; !ok {
			vs.add(kindFiles, "pod dir %s has no pod row", short(id))
		}
	}
	for _, id := range sortedKeys(n.sandboxes) {
		if s := n.sandboxes[id]; settled(s.State) && !n.podDirs[id] {
			vs.add(kindFiles, "pod %s (%s, %s) has no pod dir", short(id), s.Name, s.State)
		}
	}
	for _, id := range sortedKeys(n.bundles) {
		if !n.hasRow(id) {
			vs.add(kindFiles, "bundle %s has no row", short(id))
		}
	}
	for _, id := range sortedKeys(n.containers) {
		if c := n.containers[id]; settled(c.State) && !n.bundles[id] {
			vs.add(kindFiles, "container %s (%s, %s) has no bundle", short(id), c.Name, c.State)
		}
	}
	infraOf := n.infraOf()
	for _, id := range sortedKeys(infraOf) {
		if s := infraOf[id]; settled(s.State) && !n.bundles[id] {
			vs.add(kindFiles, "pod %s (%s, %s) has no bundle for its infra", short(s.ID), s.Name, s.State)
		}
	}
	for _, id := range sortedKeys(n.exitFiles) {
		if !n.hasRow(id) {
			vs.add(kindFiles, "exit file %s has no row", short(id))
		}
	}
}

// checkCgroups: no cgroup left of an object of this daemon that has gone.
func (n node) checkCgroups(vs *violations, mine func(id string) bool) {
	for _, id := range sortedKeys(n.cgroups) {
		_, pod := n.sandboxes[id]
		if mine(id) && !pod && !n.hasRow(id) {
			vs.add(kindCgroup, "cgroup crisp/%s is left, but %s has no row", short(id), short(id))
		}
	}
}

// checkMounts: every mount under crisp's dirs belongs to a row.
func (n node) checkMounts(vs *violations, runDir, stateDir string) {
	layerOf := map[string]string{}
	for id, rec := range n.stored {
		layerOf[rec.Layer] = id
	}
	overlay := filepath.Join(stateDir, "storage", "overlay")
	pods := filepath.Join(runDir, "pods")
	for _, m := range n.mounts {
		switch {
		case m == overlay: // the store's own
		case strings.HasPrefix(m, overlay+"/") && filepath.Base(m) == "merged":
			layer := filepath.Base(filepath.Dir(m))
			id, ok := layerOf[layer]
			if !ok {
				vs.add(kindMount, "rootfs %s is mounted, but no storage record has layer %s", m, short(layer))
			} else if !n.hasRow(id) {
				vs.add(kindMount, "rootfs of %s is mounted at %s, but it has no row", short(id), m)
			}
		case strings.HasPrefix(m, filepath.Join(runDir, "netns")+"/"): // the pins: checkNetwork
		case m == filepath.Join(runDir, "runsc", "null-netns"): // gVisor's own, kept for its next gofer
		case strings.HasPrefix(m, pods+"/"):
			rel, _ := filepath.Rel(pods, m)
			id, _, _ := strings.Cut(rel, "/")
			if _, ok := n.sandboxes[id]; !ok {
				vs.add(kindMount, "%s is mounted, but pod %s has no row", m, short(id))
			}
		default:
			vs.add(kindMount, "unexpected mount %s", m)
		}
	}
}

// expectedExits are the exit codes a workload container can have, by its
// name: quick ones exit 3 on their own, or die of the signal of a stop or
// removal (of them or of their pod) that the workload sent while they
// still ran; sleepers only die of a signal.
func expectedExits(kubeName string, signalled bool) []int {
	switch {
	case strings.HasPrefix(kubeName, "quick") && signalled:
		return []int{3, 128 + 9, 128 + 15}
	case strings.HasPrefix(kubeName, "quick"):
		return []int{3}
	case strings.HasPrefix(kubeName, "sleep"), strings.HasPrefix(kubeName, "keep"):
		return []int{128 + 9, 128 + 15}
	}
	return nil
}

func fmtCode(c *int) string {
	if c == nil {
		return "NULL"
	}
	return fmt.Sprint(*c)
}

// settled tells the states a row rests in; a row left creating or
// removing is a violation of its own, and its side effects may be partly
// there.
func settled(state string) bool {
	switch state {
	case "ready", "notready", "created", "running", "exited", "unknown":
		return true
	}
	return false
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
