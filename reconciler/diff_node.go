package reconciler

import (
	"github.com/crisp-cri/crisp/db"
)

// records adopts the records that have no row, or, for a container whose
// pod has neither row nor record, removes it as an orphan.
func (d *differ) records() {
	for id, rec := range d.s.Stored {
		if rec.Kind != db.KindPod || d.rowIDs[id] || d.now.Sub(rec.Created) < d.grace && !d.s.Rebooted {
			continue
		}
		st := d.adoptedPodState(rec)
		if st != db.SandboxReady {
			d.podDown[id] = true
		}
		d.add(Action{Kind: Adopt, Object: db.KindPod, ID: id, SandboxState: st, Reason: "in a pod dir, not in the database"})
	}
	for id, rec := range d.s.Stored {
		if rec.Kind != db.KindContainer || d.rowIDs[id] || d.now.Sub(rec.Created) < d.grace && !d.s.Rebooted {
			continue
		}
		if why := d.podGoneReason(rec.SandboxID); why != "" {
			d.add(Action{Kind: Orphan, Object: db.KindContainer, ID: id, Handler: d.s.Live[id].Handler, InStorage: true,
				Reason: "in storage, not in the database; " + why})
			continue
		}
		d.add(d.adoptContainer(id))
	}
}

// adoptedPodState is what the node says of a pod found only on disk.
func (d *differ) adoptedPodState(rec Record) db.SandboxState {
	switch {
	case d.s.Rebooted:
		return db.SandboxNotReady
	case rec.Infra:
		if l, ok := d.s.Live[rec.ID]; !ok || l.Status != LiveRunning {
			return db.SandboxNotReady
		}
	case d.pinsGone(rec.ID, rec.NetNS) != "":
		return db.SandboxNotReady
	}
	return db.SandboxReady
}

// adoptContainer is the adoption of a container found only in storage, in
// the state the runtime shows.
func (d *differ) adoptContainer(id string) Action {
	a := Action{Kind: Adopt, Object: db.KindContainer, ID: id, Reason: "in storage, not in the database"}
	l, ok := d.s.Live[id]
	switch {
	case ok && !d.s.Rebooted && l.Status == LiveCreated:
		a.ContainerState = db.ContainerCreated
	case ok && !d.s.Rebooted && (l.Status == LiveRunning || l.Status == LivePaused):
		a.ContainerState, a.PID = db.ContainerRunning, l.PID
	default:
		a.ContainerState = db.ContainerExited
		a.ExitCode, a.ExitReason, a.Reason = d.exit(id, a.Reason+"; not running")
	}
	return a
}

// podGoneReason says why pod id's things must go, or "" if the pod stays
// (it has a row that stays, or a record that is adopted).
func (d *differ) podGoneReason(id string) string {
	if why, ok := d.podGone[id]; ok {
		return why
	}
	if _, ok := d.pods[id]; ok {
		return ""
	}
	if rec, ok := d.s.Stored[id]; ok && rec.Kind == db.KindPod {
		return ""
	}
	return "its pod has no row nor record"
}

// orphans removes runtime containers that nothing owns.
func (d *differ) orphans() {
	for id, l := range d.s.Live {
		if _, stored := d.s.Stored[id]; !stored && !d.rowIDs[id] {
			d.add(Action{Kind: Orphan, Object: db.KindContainer, ID: id, Handler: l.Handler,
				Reason: "in runtime " + l.Handler + ", not in storage nor the database"})
		}
	}
}

// resources cleans what gone or stopped pods and containers left.
func (d *differ) resources() {
	netnsCleaned := map[string]bool{}
	clean := func(r Resource, obj db.NameKind, reason string) {
		d.add(Action{Kind: Clean, Object: obj, ID: r.Owner, Name: r.Path, Reason: reason})
	}
	// The netns first: its CNI DEL releases the pod's IPs too.
	for _, r := range d.s.Resources {
		if r.Object != ObjNetNS {
			continue
		}
		if why := d.podGoneReason(r.Owner); why != "" {
			clean(r, ObjNetNS, why)
			netnsCleaned[r.Owner] = true
		} else if d.podDown[r.Owner] {
			clean(r, ObjNetNS, "its pod is not ready")
			netnsCleaned[r.Owner] = true
		}
	}
	for _, r := range d.s.Resources {
		switch r.Object {
		case ObjIP:
			if r.Owner == "" || netnsCleaned[r.Owner] {
				continue // being written, or released with the netns
			}
			if why := d.podGoneReason(r.Owner); why != "" {
				clean(r, ObjIP, why)
			} else if d.podDown[r.Owner] {
				clean(r, ObjIP, "its pod is not ready")
			}
		case ObjPodDir:
			if why := d.podGoneReason(r.Owner); why != "" {
				clean(r, ObjPodDir, why)
			} else if d.podDown[r.Owner] && r.Stale {
				clean(r, ObjPodPins, "its pod is not ready and its pins are not mounted")
			}
		case ObjExit:
			// A monitor may write it after its container's row went (a
			// gVisor pod's infra stopped while its pod was removed).
			if _, stored := d.s.Stored[r.Owner]; !d.rowIDs[r.Owner] && !stored {
				if _, live := d.s.Live[r.Owner]; !live {
					clean(r, ObjExit, "its container has no row, record nor runtime container")
				}
			}
		case ObjImageVolume:
			// Made after its container's row, removed with it: one whose
			// container has neither row nor record was left by a crash.
			if _, stored := d.s.Stored[r.Owner]; !d.rowIDs[r.Owner] && !stored {
				clean(r, ObjImageVolume, "its container has no row nor record")
			}
		case ObjInfra:
			// Its pod dir's clean kills it too; this finds the one whose
			// pod dir went first (a crash while RunPodSandbox undid).
			if why := d.podGoneReason(r.Owner); why != "" {
				if _, dir := d.podDirs[r.Owner]; !dir {
					clean(r, ObjInfra, why)
				}
			}
		case ObjMount:
			if r.Owner == "" {
				clean(r, ObjMount, "overlay mount of no container")
			}
		case ObjCgroup:
			if d.cgroupLeftOver(r.Owner) {
				clean(r, ObjCgroup, "no runtime has container "+r.Owner)
			}
		}
	}
}

// cgroupLeftOver: the runtime that made a container's cgroup removes it on
// delete, so a cgroup of one of crisp's containers (with a row or a
// record) that no runtime knows is left over, unless its row is young (a
// create in flight). Cgroups of ids crisp never heard of are left alone:
// the cgroup tree is the machine's, and another crispd (tests run
// several) may own them.
func (d *differ) cgroupLeftOver(id string) bool {
	if _, live := d.s.Live[id]; live {
		return false
	}
	if rec, isPod := d.s.Stored[id]; isPod && rec.Kind == db.KindPod || d.pods[id].ID != "" {
		// A pod's cgroup may hold a process of crisp's own, not the
		// runtime's: it goes with the pod.
		return d.podGoneReason(id) != ""
	}
	if _, stored := d.s.Stored[id]; !stored && !d.rowIDs[id] {
		return false
	}
	at, hasRow := d.updated[id]
	return !hasRow || d.old(at)
}
