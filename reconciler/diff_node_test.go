package reconciler

import (
	"maps"
	"reflect"
	"testing"
	"time"

	"github.com/crisp-cri/crisp/db"
)

// podRecord is a pod's record in its pod dir, an hour old.
func podRecord(tag string, infra, netns bool) Record {
	return Record{ID: id(tag), Kind: db.KindPod, Created: now.Add(-time.Hour), Infra: infra, NetNS: netns}
}

func records(rs ...map[string]Record) map[string]Record {
	out := map[string]Record{}
	for _, r := range rs {
		maps.Copy(out, r)
	}
	return out
}

func one(r Record) map[string]Record { return map[string]Record{r.ID: r} }

func netnsOf(tag string, stale bool) Resource {
	return Resource{Object: ObjNetNS, Owner: id(tag), Path: "/run/crisp/netns/" + id(tag), Stale: stale}
}

func podDirOf(tag string, stale bool) Resource {
	return Resource{Object: ObjPodDir, Owner: id(tag), Path: "/run/crisp/pods/" + id(tag), Stale: stale}
}

func ipOf(tag, ip string) Resource { return Resource{Object: ObjIP, Owner: id(tag), Path: ip} }

func clean(obj db.NameKind, r Resource, reason string) Action {
	return Action{Kind: Clean, Object: obj, ID: r.Owner, Name: r.Path, Reason: reason}
}

func withNetNS(sb db.Sandbox) db.Sandbox {
	sb.NetNSPath = "/run/crisp/netns/" + sb.ID
	return sb
}

func TestDiffNode(t *testing.T) {
	podA := withNetNS(sandbox("a", db.SandboxReady, old))
	stoppedA := withNetNS(sandbox("a", db.SandboxNotReady, old))
	cgroup := func(tag string) Resource {
		return Resource{Object: ObjCgroup, Owner: id(tag), Path: "/crisp/" + id(tag)}
	}
	tests := []struct {
		name string
		snap Snapshot
		want []Action
	}{
		{
			name: "container in storage, created in the runtime: adopt created",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Stored: storedIn("a", "c1"), Live: live(LiveCreated, "c1")},
			want: []Action{{Kind: Adopt, Object: db.KindContainer, ID: id("c1"), ContainerState: db.ContainerCreated,
				Reason: "in storage, not in the database"}},
		},
		{
			name: "container in storage, gone from the runtime, exit file says 3: adopt exited 3",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Stored: storedIn("a", "c1"), Live: live(LiveRunning), Exits: map[string]int32{id("c1"): 3}},
			want: []Action{{Kind: Adopt, Object: db.KindContainer, ID: id("c1"), ContainerState: db.ContainerExited, ExitCode: 3, ExitReason: "Error",
				Reason: "in storage, not in the database; not running; exit file says 3"}},
		},
		{
			name: "container in storage whose pod has no row nor record: orphan, storage too",
			snap: Snapshot{Stored: storedIn("zz", "c1"), Live: live(LiveRunning, "c1")},
			want: []Action{{Kind: Orphan, Object: db.KindContainer, ID: id("c1"), Handler: "runc", InStorage: true,
				Reason: "in storage, not in the database; its pod has no row nor record"}},
		},
		{
			name: "container in storage of a pod being rolled back: orphan",
			snap: Snapshot{Sandboxes: []db.Sandbox{sandbox("b", db.SandboxCreating, old)}, Stored: storedIn("b", "c1"), Live: live(LiveRunning)},
			want: []Action{
				{Kind: FinishOrRollback, Object: db.KindPod, ID: id("b"), Handler: "runc", Reason: "was left creating"},
				{Kind: Orphan, Object: db.KindContainer, ID: id("c1"), InStorage: true,
					Reason: "in storage, not in the database; its pod was left creating"},
			},
		},
		{
			name: "pod record with a running infra: adopt ready; with a stopped one: notready",
			snap: Snapshot{Stored: records(one(podRecord("p", true, false)), one(podRecord("q", true, false))),
				Live: records2live(map[string]LiveStatus{"p": LiveRunning, "q": LiveStopped})},
			want: []Action{
				{Kind: Adopt, Object: db.KindPod, ID: id("p"), SandboxState: db.SandboxReady, Reason: "in a pod dir, not in the database"},
				{Kind: Adopt, Object: db.KindPod, ID: id("q"), SandboxState: db.SandboxNotReady, Reason: "in a pod dir, not in the database"},
			},
		},
		{
			name: "pod record without infra: ready while its netns pin is mounted",
			snap: Snapshot{Stored: one(podRecord("p", false, true)), Live: live(LiveRunning),
				Resources: []Resource{netnsOf("p", false), podDirOf("p", false), ipOf("p", "10.0.0.2")}},
			want: []Action{{Kind: Adopt, Object: db.KindPod, ID: id("p"), SandboxState: db.SandboxReady, Reason: "in a pod dir, not in the database"}},
		},
		{
			name: "pod record whose netns pin is stale: adopt notready, clean its netns",
			snap: Snapshot{Stored: one(podRecord("p", false, true)), Live: live(LiveRunning),
				Resources: []Resource{netnsOf("p", true), ipOf("p", "10.0.0.2")}},
			want: []Action{
				{Kind: Adopt, Object: db.KindPod, ID: id("p"), SandboxState: db.SandboxNotReady, Reason: "in a pod dir, not in the database"},
				clean(ObjNetNS, netnsOf("p", true), "its pod is not ready"),
			},
		},
		{
			name: "young pod record: neither adopted nor cleaned (a RunPodSandbox in flight)",
			snap: Snapshot{Stored: map[string]Record{id("p"): {ID: id("p"), Kind: db.KindPod, Created: now, NetNS: true}}, Live: live(LiveRunning),
				Resources: []Resource{netnsOf("p", false), podDirOf("p", false), ipOf("p", "10.0.0.2")}},
			want: nil,
		},
		{
			name: "ready pod without infra whose netns pin is stale: notready, netns cleaned",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Stored: stored(), Live: live(LiveRunning),
				Resources: []Resource{netnsOf("a", true), podDirOf("a", false)}},
			want: []Action{
				{Kind: MarkExited, Object: db.KindPod, ID: id("a"), Handler: "runc", Reason: "its network namespace pin is gone"},
				clean(ObjNetNS, netnsOf("a", true), "its pod is not ready"),
			},
		},
		{
			name: "ready pod without infra whose pod dir pins are stale: notready, pins removed",
			snap: Snapshot{Sandboxes: []db.Sandbox{sandbox("a", db.SandboxReady, old)}, Stored: stored(), Live: live(LiveRunning),
				Resources: []Resource{podDirOf("a", true)}},
			want: []Action{
				{Kind: MarkExited, Object: db.KindPod, ID: id("a"), Handler: "runc", Reason: "its namespace pins are gone"},
				clean(ObjPodPins, podDirOf("a", true), "its pod is not ready and its pins are not mounted"),
			},
		},
		{
			name: "ready pod whose infra process exited: notready, pins kept for StopPodSandbox",
			snap: Snapshot{Sandboxes: []db.Sandbox{sandbox("a", db.SandboxReady, old)}, Stored: stored(), Live: live(LiveRunning),
				Resources: []Resource{{Object: ObjPodDir, Owner: id("a"), Path: "/run/crisp/pods/" + id("a"), InfraExited: true}}},
			want: []Action{
				{Kind: MarkExited, Object: db.KindPod, ID: id("a"), Handler: "runc", Reason: "its infra process has exited"},
			},
		},
		{
			name: "exit file of a container that is gone: removed; of a known one: kept",
			snap: Snapshot{Containers: []db.Container{container("c1", "a", db.ContainerExited, old)}, Sandboxes: []db.Sandbox{sandbox("a", db.SandboxReady, old)},
				Stored: stored("c1"), Live: live(LiveRunning),
				Resources: []Resource{{Object: ObjExit, Owner: id("c1"), Path: "/run/crisp/exits/" + id("c1")}, {Object: ObjExit, Owner: id("c9"), Path: "/run/crisp/exits/" + id("c9")}}},
			want: []Action{clean(ObjExit, Resource{Object: ObjExit, Owner: id("c9"), Path: "/run/crisp/exits/" + id("c9")}, "its container has no row, record nor runtime container")},
		},
		{
			name: "infra process of a pod with no row, record nor dir: killed",
			snap: Snapshot{Stored: stored(), Live: live(LiveRunning),
				Resources: []Resource{{Object: ObjInfra, Owner: id("z"), Path: "4242"}}},
			want: []Action{clean(ObjInfra, Resource{Object: ObjInfra, Owner: id("z"), Path: "4242"}, "its pod has no row nor record")},
		},
		{
			name: "infra process of a gone pod whose dir remains: the dir's clean kills it",
			snap: Snapshot{Stored: stored(), Live: live(LiveRunning),
				Resources: []Resource{{Object: ObjInfra, Owner: id("z"), Path: "4242"}, podDirOf("z", false)}},
			want: []Action{clean(ObjPodDir, podDirOf("z", false), "its pod has no row nor record")},
		},
		{
			name: "infra process of a live pod: kept",
			snap: Snapshot{Sandboxes: []db.Sandbox{sandbox("a", db.SandboxReady, old)}, Stored: stored(), Live: live(LiveRunning),
				Resources: []Resource{{Object: ObjInfra, Owner: id("a"), Path: "4242"}, podDirOf("a", false)}},
			want: nil,
		},
		{
			name: "ready pod, pins in place: nothing to do",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Stored: stored(), Live: live(LiveRunning),
				Resources: []Resource{netnsOf("a", false), podDirOf("a", false), ipOf("a", "10.0.0.2")}},
			want: nil,
		},
		{
			name: "stopped pod still holding a netns: CNI DEL and unpin (which releases its IP)",
			snap: Snapshot{Sandboxes: []db.Sandbox{stoppedA}, Stored: stored(), Live: live(LiveRunning),
				Resources: []Resource{netnsOf("a", false), ipOf("a", "10.0.0.2"), podDirOf("a", false)}},
			want: []Action{clean(ObjNetNS, netnsOf("a", false), "its pod is not ready")},
		},
		{
			name: "stopped pod still holding an IP without a netns: release it",
			snap: Snapshot{Sandboxes: []db.Sandbox{stoppedA}, Stored: stored(), Live: live(LiveRunning),
				Resources: []Resource{ipOf("a", "10.0.0.2")}},
			want: []Action{clean(ObjIP, ipOf("a", "10.0.0.2"), "its pod is not ready")},
		},
		{
			name: "netns, IP and pod dir of no pod: all cleaned; an allocation being written is not",
			snap: Snapshot{Stored: stored(), Live: live(LiveRunning),
				Resources: []Resource{netnsOf("x", false), ipOf("y", "10.0.0.3"), podDirOf("z", false), {Object: ObjIP, Path: "10.0.0.4"}}},
			want: []Action{
				clean(ObjIP, ipOf("y", "10.0.0.3"), "its pod has no row nor record"),
				clean(ObjNetNS, netnsOf("x", false), "its pod has no row nor record"),
				clean(ObjPodDir, podDirOf("z", false), "its pod has no row nor record"),
			},
		},
		{
			name: "pod rolled back: its netns and pod dir go in the same pass",
			snap: Snapshot{Sandboxes: []db.Sandbox{sandbox("b", db.SandboxCreating, old)}, Stored: stored(), Live: live(LiveRunning),
				Resources: []Resource{netnsOf("b", false), podDirOf("b", false)}},
			want: []Action{
				{Kind: FinishOrRollback, Object: db.KindPod, ID: id("b"), Handler: "runc", Reason: "was left creating"},
				clean(ObjNetNS, netnsOf("b", false), "its pod was left creating"),
				clean(ObjPodDir, podDirOf("b", false), "its pod was left creating"),
			},
		},
		{
			name: "image volume of a container with a row or a record: keep; of none: remove",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Containers: []db.Container{container("c1", "a", db.ContainerRunning, old)},
				Stored: storedIn("a", "c1", "c2"), Live: live(LiveRunning, "c1"),
				Resources: []Resource{{Object: ObjImageVolume, Owner: id("c1"), Path: "v1"}, {Object: ObjImageVolume, Owner: id("c2"), Path: "v2"},
					{Object: ObjImageVolume, Owner: id("c3"), Path: "v3"}, netnsOf("a", false)}},
			want: []Action{
				{Kind: Adopt, Object: db.KindContainer, ID: id("c2"), Reason: "in storage, not in the database; not running",
					ExitCode: 255, ExitReason: db.ExitUnknown, ContainerState: db.ContainerExited},
				{Kind: Clean, Object: ObjImageVolume, ID: id("c3"), Name: "v3", Reason: "its container has no row nor record"},
			},
		},
		{
			name: "overlay mount of no container: unmount; of a container: keep",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Containers: []db.Container{container("c1", "a", db.ContainerRunning, old)},
				Stored: storedIn("a", "c1"), Live: live(LiveRunning, "c1"),
				Resources: []Resource{{Object: ObjMount, Path: "/var/lib/crisp/storage/overlay/l1/merged"},
					{Object: ObjMount, Owner: id("c1"), Path: "/var/lib/crisp/storage/overlay/l2/merged"}, netnsOf("a", false)}},
			want: []Action{{Kind: Clean, Object: ObjMount, Name: "/var/lib/crisp/storage/overlay/l1/merged", Reason: "overlay mount of no container"}},
		},
		{
			name: "cgroups: of a live container or a young row kept, of an old row or a record removed, of a stranger kept",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA},
				Containers: []db.Container{container("c1", "a", db.ContainerRunning, old), container("c2", "a", db.ContainerCreating, young),
					container("c3", "a", db.ContainerExited, old)},
				Stored: records(storedIn("a", "c1", "c2", "c3"), storedIn("zz", "c5")), Live: live(LiveRunning, "c1"),
				Resources: []Resource{cgroup("c1"), cgroup("c2"), cgroup("c3"), cgroup("c4"), cgroup("c5"), netnsOf("a", false)}},
			want: []Action{
				{Kind: Orphan, Object: db.KindContainer, ID: id("c5"), InStorage: true,
					Reason: "in storage, not in the database; its pod has no row nor record"},
				clean(ObjCgroup, cgroup("c3"), "no runtime has container "+id("c3")),
				clean(ObjCgroup, cgroup("c5"), "no runtime has container "+id("c5")),
			},
		},
		{
			name: "a pod's cgroup (its own infra process) goes only with the pod",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Stored: one(podRecord("q", false, false)), Live: live(LiveRunning),
				Resources: []Resource{cgroup("a"), cgroup("q"), netnsOf("a", false)}},
			want: []Action{{Kind: Adopt, Object: db.KindPod, ID: id("q"), SandboxState: db.SandboxReady, Reason: "in a pod dir, not in the database"}},
		},
		{
			name: "a rolled back pod's cgroup goes with it",
			snap: Snapshot{Sandboxes: []db.Sandbox{sandbox("b", db.SandboxCreating, old)}, Stored: stored(), Live: live(LiveRunning),
				Resources: []Resource{cgroup("b")}},
			want: []Action{
				{Kind: FinishOrRollback, Object: db.KindPod, ID: id("b"), Handler: "runc", Reason: "was left creating"},
				clean(ObjCgroup, cgroup("b"), "no runtime has container "+id("b")),
			},
		},
		{
			name: "after a reboot: young ready pods go notready, containers exit, pins and IPs go",
			snap: Snapshot{Rebooted: true,
				Sandboxes:  []db.Sandbox{withNetNS(sandbox("a", db.SandboxReady, young)), withInfra(sandbox("h", db.SandboxReady, young), "h")},
				Containers: []db.Container{container("c1", "a", db.ContainerRunning, young)},
				Stored:     records(storedIn("a", "c1"), one(podRecord("a", false, true)), one(podRecord("h", true, false))),
				Live:       live(LiveStopped, "c1"),
				Resources:  []Resource{netnsOf("a", true), podDirOf("a", true), ipOf("a", "10.0.0.2"), ipOf("h", "10.0.0.5")},
				Exits:      map[string]int32{}},
			want: []Action{
				{Kind: MarkExited, Object: db.KindContainer, ID: id("c1"), Handler: "runc", ExitCode: 255, ExitReason: "Unknown", Reason: "runtime says stopped"},
				{Kind: MarkExited, Object: db.KindPod, ID: id("a"), Handler: "runc", Reason: "the node rebooted"},
				{Kind: MarkExited, Object: db.KindPod, ID: id("h"), Handler: "runc", Reason: "the node rebooted"},
				clean(ObjIP, ipOf("h", "10.0.0.5"), "its pod is not ready"),
				clean(ObjNetNS, netnsOf("a", true), "its pod is not ready"),
				clean(ObjPodPins, podDirOf("a", true), "its pod is not ready and its pins are not mounted"),
			},
		},
		{
			name: "after a reboot with the database lost: pods adopted notready, containers exited",
			snap: Snapshot{Rebooted: true, Stored: records(storedIn("a", "c1"), one(podRecord("a", false, true))), Live: live(LiveRunning, "c1"),
				Resources: []Resource{}},
			want: []Action{
				{Kind: Adopt, Object: db.KindPod, ID: id("a"), SandboxState: db.SandboxNotReady, Reason: "in a pod dir, not in the database"},
				{Kind: Adopt, Object: db.KindContainer, ID: id("c1"), ContainerState: db.ContainerExited, ExitCode: 255, ExitReason: "Unknown",
					Reason: "in storage, not in the database; not running"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Diff(tt.snap, now, grace)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Diff() =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// records2live is runtime containers with the given states, by tag.
func records2live(states map[string]LiveStatus) map[string]Live {
	m := map[string]Live{}
	for tag, st := range states {
		m[id(tag)] = Live{ID: id(tag), Handler: "runc", Status: st}
	}
	return m
}
