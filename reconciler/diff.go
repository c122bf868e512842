package reconciler

import (
	"sort"
	"strconv"
	"time"

	"github.com/crisp-cri/crisp/db"
)

// Kind is what an Action does.
type Kind string

// The actions of DESIGN.md.
const (
	// Adopt: a record without a row; rebuild the row from it.
	Adopt Kind = "adopt"
	// Forget: a row whose object is gone from storage and runtime; delete
	// the row and release its name.
	Forget Kind = "forget"
	// MarkExited: a row says running but the runtime says stopped or gone;
	// record the exit (a pod whose infra died becomes notready).
	MarkExited Kind = "mark-exited"
	// FinishOrRollback: a row left creating or removing by a crash; finish
	// it if every side effect is in place, else undo them and delete it.
	FinishOrRollback Kind = "finish-or-rollback"
	// Orphan: a runtime container or storage record that no row owns and
	// none can be rebuilt for: kill, delete and remove it.
	Orphan Kind = "orphan"
	// Clean: a resource (netns, IP, pod dir, mount, cgroup) left over by a
	// pod or container that is gone or stopped.
	Clean Kind = "clean"
	// Release: a name reserved for an owner that has no row.
	Release Kind = "release"
)

// Kinds lists every action kind, in the order Apply runs them.
var Kinds = []Kind{Adopt, FinishOrRollback, MarkExited, Forget, Orphan, Clean, Release}

// Action is one repair, with the reason Diff chose it.
type Action struct {
	Kind    Kind
	Object  db.NameKind // pod, container, or a resource (ObjNetNS, ...)
	ID      string      // the object; for Clean, the resource's owner
	Reason  string
	Handler string // runtime handler of the object, for Destroy
	Name    string // Release: the name to free; Clean: the resource's path
	// MarkExited, and Adopt of an exited container: the exit to record.
	ExitCode   int32
	ExitReason string
	// FinishOrRollback: the state to finish in; empty means roll back.
	FinishTo db.ContainerState
	// Orphan: the container also has a storage record to remove.
	InStorage bool
	// Adopt: the state the node shows, and a running container's pid.
	SandboxState   db.SandboxState
	ContainerState db.ContainerState
	PID            int
	PIDStart       uint64 // FinishOrRollback to running: the pid's start time
}

// exitUnknown is the exit code of a container that vanished without a
// recorded exit, as CRI-O and containerd report it.
const exitUnknown = 255

// Diff compares a snapshot with the database and returns the repairs to
// make, sorted in the order Apply must run them. It is pure: no I/O, no
// clock. Rows, names and records that changed less than grace before now
// are left alone, since a CRI call may still be working on them; after a
// reboot nothing can be, and grace is ignored.
func Diff(s Snapshot, now time.Time, grace time.Duration) []Action {
	d := newDiffer(s, now, grace)
	if s.Stored != nil && s.Live != nil {
		d.rows()
		d.records()
		d.orphans()
		if s.Resources != nil {
			d.resources()
		}
	}
	for _, n := range s.Names {
		if !d.rowIDs[n.OwnerID] && d.old(n.ReservedAt) {
			d.add(Action{Kind: Release, Object: n.Kind, ID: n.OwnerID, Name: n.Name,
				Reason: "reserved for " + n.OwnerID + ", which has no row"})
		}
	}
	sortActions(d.out)
	return d.out
}

// differ holds Diff's indexes and the decisions later rules depend on.
type differ struct {
	s            Snapshot
	now          time.Time
	grace        time.Duration
	pods         map[string]db.Sandbox
	containersOf map[string][]db.Container
	rowIDs       map[string]bool     // pod, infra and container ids that have rows
	updated      map[string]int64    // when each pod and container row last changed
	rolledBack   map[string]bool     // containers rolled back with their pod
	podGone      map[string]string   // pods whose row goes this pass, with why
	podDown      map[string]bool     // pods that are, or are being marked, not ready
	netns        map[string]Resource // netns pins by pod
	podDirs      map[string]Resource // pod dirs by pod
	hasIP        map[string]bool     // pods that hold an IP allocation
	out          []Action
}

func newDiffer(s Snapshot, now time.Time, grace time.Duration) *differ {
	d := &differ{s: s, now: now, grace: grace, pods: map[string]db.Sandbox{}, containersOf: map[string][]db.Container{},
		rowIDs: map[string]bool{}, updated: map[string]int64{}, rolledBack: map[string]bool{}, podGone: map[string]string{}, podDown: map[string]bool{},
		netns: map[string]Resource{}, podDirs: map[string]Resource{}, hasIP: map[string]bool{}}
	for _, sb := range s.Sandboxes {
		d.pods[sb.ID] = sb
		d.rowIDs[sb.ID] = true
		d.updated[sb.ID] = sb.UpdatedAt
		if sb.InfraID != "" {
			d.rowIDs[sb.InfraID] = true // the infra container is the pod's, not an orphan
		}
	}
	for _, c := range s.Containers {
		d.containersOf[c.SandboxID] = append(d.containersOf[c.SandboxID], c)
		d.rowIDs[c.ID] = true
		d.updated[c.ID] = c.UpdatedAt
	}
	for _, r := range s.Resources {
		switch r.Object {
		case ObjNetNS:
			d.netns[r.Owner] = r
		case ObjPodDir:
			d.podDirs[r.Owner] = r
		case ObjIP:
			d.hasIP[r.Owner] = true
		}
	}
	return d
}

func (d *differ) add(a ...Action) { d.out = append(d.out, a...) }

// old reports whether something stamped at nanos is older than grace.
func (d *differ) old(nanos int64) bool {
	return d.s.Rebooted || d.now.Sub(db.Time(nanos)) >= d.grace
}

// rows decides the repairs of old-enough rows.
func (d *differ) rows() {
	for _, sb := range d.s.Sandboxes {
		if !d.old(sb.UpdatedAt) {
			continue
		}
		d.add(d.sandbox(sb)...)
	}
	for _, c := range d.s.Containers {
		if !d.old(c.UpdatedAt) || d.rolledBack[c.ID] {
			continue
		}
		if a, ok := d.container(c, d.pods[c.SandboxID].Handler); ok {
			d.add(a)
		}
	}
}

// sandbox decides the repairs for one old-enough sandbox row. Rolling a
// sandbox back rolls its containers back too.
func (d *differ) sandbox(sb db.Sandbox) []Action {
	rollback := func(reason string) []Action {
		d.podGone[sb.ID] = "its pod " + reason
		out := []Action{{Kind: FinishOrRollback, Object: db.KindPod, ID: sb.ID, Handler: sb.Handler, Reason: reason}}
		for _, c := range d.containersOf[sb.ID] {
			d.rolledBack[c.ID] = true
			out = append(out, Action{Kind: FinishOrRollback, Object: db.KindContainer, ID: c.ID, Handler: sb.Handler,
				Reason: "its pod " + reason})
		}
		return out
	}
	notReady := func(reason string) []Action {
		d.podDown[sb.ID] = true
		return []Action{{Kind: MarkExited, Object: db.KindPod, ID: sb.ID, Handler: sb.Handler, Reason: reason}}
	}
	switch sb.State {
	case db.SandboxCreating:
		return rollback("was left creating")
	case db.SandboxRemoving:
		return rollback("was left removing")
	case db.SandboxNotReady:
		d.podDown[sb.ID] = true
	}
	ready := sb.State == db.SandboxReady
	if sb.InfraID == "" { // a pod without infra exists as long as its row does
		if !ready {
			return nil
		}
		if d.s.Rebooted {
			return notReady("the node rebooted")
		}
		if why := d.pinsGone(sb.ID, sb.NetNSPath != ""); why != "" {
			return notReady(why)
		}
		if d.ipsReleased(sb) {
			return notReady("its IP addresses were released")
		}
		return nil
	}
	live, isLive := d.s.Live[sb.InfraID]
	_, stored := d.s.Stored[sb.InfraID]
	switch {
	case !isLive && !stored && len(d.containersOf[sb.ID]) == 0:
		d.podGone[sb.ID] = "its pod is forgotten"
		return []Action{{Kind: Forget, Object: db.KindPod, ID: sb.ID, Handler: sb.Handler, Reason: "infra gone from storage and runtime"}}
	case ready && d.s.Rebooted:
		return notReady("the node rebooted")
	case ready && (!isLive || live.Status == LiveStopped):
		return notReady("infra container not running")
	}
	return nil
}

// pinsGone says why a pod without infra is dead, or "": the pins that
// hold its namespaces are what keeps it alive.
func (d *differ) pinsGone(id string, hasNetNS bool) string {
	if d.s.Resources == nil {
		return ""
	}
	if ns, ok := d.netns[id]; hasNetNS && (!ok || ns.Stale) {
		return "its network namespace pin is gone"
	}
	if dir, ok := d.podDirs[id]; ok && dir.Stale {
		return "its namespace pins are gone"
	}
	if dir, ok := d.podDirs[id]; ok && dir.InfraExited {
		return "its infra process has exited"
	}
	return ""
}

// ipsReleased: a pod recorded with IPs holds none any more (a crash in
// StopPodSandbox between the CNI DEL and the row): its network is gone.
func (d *differ) ipsReleased(sb db.Sandbox) bool {
	return d.s.IPsObserved && sb.NetNSPath != "" && len(sb.IPs) > 0 && !d.hasIP[sb.ID]
}

// container decides the repair, if any, for one old-enough container row.
func (d *differ) container(c db.Container, handler string) (Action, bool) {
	a := Action{Object: db.KindContainer, ID: c.ID, Handler: handler}
	live, isLive := d.s.Live[c.ID]
	_, stored := d.s.Stored[c.ID]
	switch {
	case c.State == db.ContainerCreating:
		a.Kind, a.Reason = FinishOrRollback, "was left creating"
		switch {
		case isLive && stored && live.Status == LiveCreated && live.MonitorAlive:
			a.FinishTo, a.Reason = db.ContainerCreated, "was left creating; runtime has it created"
		case isLive && live.Status == LiveCreated:
			// A crash while its monitor was being set up: nothing would
			// ever record its exit.
			a.Reason = "was left creating; runtime has it created, without a monitor"
		}
	case c.State == db.ContainerCreated && isLive && live.Status == LiveRunning:
		// A crash between the runtime's start and the row.
		a.Kind, a.Reason, a.FinishTo = FinishOrRollback, "was left created; runtime has it running", db.ContainerRunning
		a.PID, a.PIDStart = live.PID, live.PIDStart
	case c.State == db.ContainerRemoving:
		a.Kind, a.Reason = FinishOrRollback, "was left removing"
	case !isLive && !stored:
		a.Kind, a.Reason = Forget, "gone from storage and runtime"
	case c.State == db.ContainerExited:
		return a, false
	case isLive && live.Status == LiveStopped && live.MonitorAlive && !d.hasExit(c.ID):
		return a, false // its monitor is about to write the exit file: next pass
	case !isLive || live.Status == LiveStopped:
		a.Kind, a.Reason = MarkExited, "runtime says stopped"
		if !isLive {
			a.Reason = "runtime has no such container"
		}
		a.ExitCode, a.ExitReason, a.Reason = d.exit(c.ID, a.Reason)
	default:
		return a, false
	}
	return a, true
}

// exit is a stopped container's exit: its exit file's, else 255 Unknown.
func (d *differ) exit(id, reason string) (int32, string, string) {
	if code, ok := d.s.Exits[id]; ok {
		return code, db.ExitReason(code, false), reason + "; exit file says " + strconv.Itoa(int(code))
	}
	return exitUnknown, db.ExitUnknown, reason
}

// sortActions orders actions for Apply: by kind as in Kinds; within a kind
// pods are adopted before their containers, and containers are rolled back
// or forgotten before their pods; then by object, id and name, for stable
// output.
func sortActions(as []Action) {
	rank := map[Kind]int{}
	for i, k := range Kinds {
		rank[k] = i
	}
	sort.SliceStable(as, func(i, j int) bool {
		a, b := as[i], as[j]
		if rank[a.Kind] != rank[b.Kind] {
			return rank[a.Kind] < rank[b.Kind]
		}
		if objectRank(a) != objectRank(b) {
			return objectRank(a) < objectRank(b)
		}
		if a.Object != b.Object {
			return a.Object < b.Object
		}
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Name < b.Name
	})
}

// objectRank splits a kind's actions into what must run first (0) and
// what must wait for it (1): adopted pods before their containers, other
// actions on containers before those on their pods.
func objectRank(a Action) int {
	podFirst := a.Kind == Adopt
	if (a.Object == db.KindPod) == podFirst {
		return 0
	}
	return 1
}

func (d *differ) hasExit(id string) bool {
	_, ok := d.s.Exits[id]
	return ok
}
