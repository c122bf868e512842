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
	// Adopt: a storage record without a row; rebuild the row from it.
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
	// Orphan: a runtime container with no storage record and no row.
	Orphan Kind = "orphan"
	// Release: a name reserved for an owner that has no row.
	Release Kind = "release"
)

// Kinds lists every action kind, in the order Apply runs them.
var Kinds = []Kind{Adopt, FinishOrRollback, MarkExited, Forget, Orphan, Release}

// Action is one repair, with the reason Diff chose it.
type Action struct {
	Kind    Kind
	Object  db.NameKind // pod or container
	ID      string
	Reason  string
	Handler string // runtime handler of the object, for Destroy
	Name    string // Release: the name to free
	// MarkExited: the exit to record (containers only).
	ExitCode   int32
	ExitReason string
	// FinishOrRollback: the state to finish in; empty means roll back.
	FinishTo db.ContainerState
}

// exitUnknown is the exit code of a container that vanished without a
// recorded exit, as CRI-O and containerd report it.
const exitUnknown = 255

// Diff compares a snapshot with the database and returns the repairs to
// make, sorted in the order Apply must run them. It is pure: no I/O, no
// clock. Rows, names and records that changed less than grace before now
// are left alone, since a CRI call may still be working on them.
func Diff(s Snapshot, now time.Time, grace time.Duration) []Action {
	old := func(nanos int64) bool { return now.Sub(db.Time(nanos)) >= grace }
	observed := s.Stored != nil && s.Live != nil
	handlerOf := map[string]string{}
	rowIDs := map[string]bool{}
	for _, sb := range s.Sandboxes {
		handlerOf[sb.ID] = sb.Handler
		rowIDs[sb.ID] = true
		if sb.InfraID != "" {
			rowIDs[sb.InfraID] = true // the infra container is the pod's, not an orphan
		}
	}
	containersOf := map[string][]db.Container{}
	for _, c := range s.Containers {
		containersOf[c.SandboxID] = append(containersOf[c.SandboxID], c)
		rowIDs[c.ID] = true
	}

	var out []Action
	rolledBack := map[string]bool{}
	if observed {
		for _, sb := range s.Sandboxes {
			if !old(sb.UpdatedAt) {
				continue
			}
			out = append(out, diffSandbox(s, sb, containersOf[sb.ID], rolledBack)...)
		}
		for _, c := range s.Containers {
			if !old(c.UpdatedAt) || rolledBack[c.ID] {
				continue
			}
			if a, ok := diffContainer(s, c, handlerOf[c.SandboxID]); ok {
				out = append(out, a)
			}
		}
		for id, rec := range s.Stored {
			if !rowIDs[id] && now.Sub(rec.Created) >= grace {
				out = append(out, Action{Kind: Adopt, Object: rec.Kind, ID: id, Reason: "in storage, not in the database"})
			}
		}
		for id, l := range s.Live {
			if _, stored := s.Stored[id]; !stored && !rowIDs[id] {
				out = append(out, Action{Kind: Orphan, Object: db.KindContainer, ID: id, Handler: l.Handler,
					Reason: "in runtime " + l.Handler + ", not in storage nor the database"})
			}
		}
	}
	for _, n := range s.Names {
		if !rowIDs[n.OwnerID] && old(n.ReservedAt) {
			out = append(out, Action{Kind: Release, Object: n.Kind, ID: n.OwnerID, Name: n.Name,
				Reason: "reserved for " + n.OwnerID + ", which has no row"})
		}
	}
	sortActions(out)
	return out
}

// diffSandbox decides the repairs for one old-enough sandbox row. Rolling
// a sandbox back rolls its containers back too (recorded in rolledBack).
func diffSandbox(s Snapshot, sb db.Sandbox, containers []db.Container, rolledBack map[string]bool) []Action {
	rollback := func(reason string) []Action {
		out := []Action{{Kind: FinishOrRollback, Object: db.KindPod, ID: sb.ID, Handler: sb.Handler, Reason: reason}}
		for _, c := range containers {
			rolledBack[c.ID] = true
			out = append(out, Action{Kind: FinishOrRollback, Object: db.KindContainer, ID: c.ID, Handler: sb.Handler,
				Reason: "its pod " + reason})
		}
		return out
	}
	switch sb.State {
	case db.SandboxCreating:
		return rollback("was left creating")
	case db.SandboxRemoving:
		return rollback("was left removing")
	}
	if sb.InfraID == "" {
		return nil // a pod without infra exists as long as its row does
	}
	live, isLive := s.Live[sb.InfraID]
	_, stored := s.Stored[sb.InfraID]
	switch {
	case !isLive && !stored && len(containers) == 0:
		return []Action{{Kind: Forget, Object: db.KindPod, ID: sb.ID, Handler: sb.Handler, Reason: "infra gone from storage and runtime"}}
	case sb.State == db.SandboxReady && (!isLive || live.Status == LiveStopped):
		return []Action{{Kind: MarkExited, Object: db.KindPod, ID: sb.ID, Handler: sb.Handler, Reason: "infra container not running"}}
	}
	return nil
}

// diffContainer decides the repair, if any, for one old-enough container row.
func diffContainer(s Snapshot, c db.Container, handler string) (Action, bool) {
	a := Action{Object: db.KindContainer, ID: c.ID, Handler: handler}
	live, isLive := s.Live[c.ID]
	_, stored := s.Stored[c.ID]
	switch {
	case c.State == db.ContainerCreating:
		a.Kind, a.Reason = FinishOrRollback, "was left creating"
		if isLive && stored && live.Status == LiveCreated {
			a.FinishTo, a.Reason = db.ContainerCreated, "was left creating; runtime has it created"
		}
	case c.State == db.ContainerRemoving:
		a.Kind, a.Reason = FinishOrRollback, "was left removing"
	case !isLive && !stored:
		a.Kind, a.Reason = Forget, "gone from storage and runtime"
	case c.State == db.ContainerExited:
		return a, false
	case !isLive || live.Status == LiveStopped:
		a.Kind, a.ExitCode, a.ExitReason = MarkExited, exitUnknown, "Unknown"
		a.Reason = "runtime says stopped"
		if !isLive {
			a.Reason = "runtime has no such container"
		}
		if code, ok := s.Exits[c.ID]; ok {
			a.ExitCode, a.ExitReason = code, exitReason(code)
			a.Reason += "; exit file says " + strconv.Itoa(int(code))
		}
	default:
		return a, false
	}
	return a, true
}

// exitReason is kubelet's reason for an exit code.
func exitReason(code int32) string {
	if code == 0 {
		return "Completed"
	}
	return "Error"
}

// sortActions orders actions for Apply: by kind as in Kinds; within a kind
// pods are adopted before their containers, and containers are rolled back
// or forgotten before their pods; then by id, for stable output.
func sortActions(as []Action) {
	rank := map[Kind]int{}
	for i, k := range Kinds {
		rank[k] = i
	}
	objectRank := func(a Action) int {
		podFirst := a.Kind == Adopt
		if (a.Object == db.KindPod) == podFirst {
			return 0
		}
		return 1
	}
	sort.SliceStable(as, func(i, j int) bool {
		a, b := as[i], as[j]
		if rank[a.Kind] != rank[b.Kind] {
			return rank[a.Kind] < rank[b.Kind]
		}
		if objectRank(a) != objectRank(b) {
			return objectRank(a) < objectRank(b)
		}
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Name < b.Name
	})
}
