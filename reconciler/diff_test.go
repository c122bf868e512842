package reconciler

import (
	"reflect"
	"testing"
	"time"

	"github.com/crisp-cri/crisp/db"
)

var (
	now   = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	grace = time.Minute
	old   = now.Add(-time.Hour).UnixNano()
	young = now.Add(-time.Second).UnixNano()
)

// id makes a readable 64-character id from a short tag.
func id(tag string) string {
	const pad = "0000000000000000000000000000000000000000000000000000000000000000"
	return tag + pad[len(tag):]
}

func sandbox(tag string, state db.SandboxState, updated int64) db.Sandbox {
	return db.Sandbox{ID: id(tag), Name: "pod-" + tag, State: state, Handler: "runc", UpdatedAt: updated}
}

func container(tag, pod string, state db.ContainerState, updated int64) db.Container {
	return db.Container{ID: id(tag), SandboxID: id(pod), Name: "ctr-" + tag, State: state, UpdatedAt: updated}
}

func stored(tags ...string) map[string]Record {
	m := map[string]Record{}
	for _, t := range tags {
		m[id(t)] = Record{ID: id(t), Kind: db.KindContainer, Created: now.Add(-time.Hour)}
	}
	return m
}

func live(status LiveStatus, tags ...string) map[string]Live {
	m := map[string]Live{}
	for _, t := range tags {
		m[id(t)] = Live{ID: id(t), Handler: "runc", Status: status, MonitorAlive: status != LiveStopped}
	}
	return m
}

func TestDiff(t *testing.T) {
	podA := sandbox("a", db.SandboxReady, old)
	tests := []struct {
		name string
		snap Snapshot
		want []Action
	}{
		{
			name: "all agree: nothing to do",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Containers: []db.Container{container("c1", "a", db.ContainerRunning, old)},
				Stored: stored("c1"), Live: live(LiveRunning, "c1")},
			want: nil,
		},
		{
			name: "in storage, no row, its pod has one: adopt, running as the runtime says",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Stored: storedIn("a", "c1"), Live: livePID(LiveRunning, 42, "c1")},
			want: []Action{{Kind: Adopt, Object: db.KindContainer, ID: id("c1"), ContainerState: db.ContainerRunning, PID: 42,
				Reason: "in storage, not in the database"}},
		},
		{
			name: "young storage record without row is left alone (a create in flight)",
			snap: Snapshot{Stored: map[string]Record{id("c1"): {ID: id("c1"), Kind: db.KindContainer, Created: now}}, Live: live(LiveRunning)},
			want: nil,
		},
		{
			name: "row, gone from storage and runtime: forget",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Containers: []db.Container{container("c1", "a", db.ContainerExited, old)},
				Stored: stored(), Live: live(LiveRunning)},
			want: []Action{{Kind: Forget, Object: db.KindContainer, ID: id("c1"), Handler: "runc", Reason: "gone from storage and runtime"}},
		},
		{
			name: "running row, runtime has none, exit file says 3: mark exited 3",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Containers: []db.Container{container("c1", "a", db.ContainerRunning, old)},
				Stored: stored("c1"), Live: live(LiveRunning), Exits: map[string]int32{id("c1"): 3}},
			want: []Action{{Kind: MarkExited, Object: db.KindContainer, ID: id("c1"), Handler: "runc", ExitCode: 3, ExitReason: "Error",
				Reason: "runtime has no such container; exit file says 3"}},
		},
		{
			name: "running row, runtime says stopped, no exit file: mark exited 255 Unknown",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Containers: []db.Container{container("c1", "a", db.ContainerRunning, old)},
				Stored: stored("c1"), Live: live(LiveStopped, "c1")},
			want: []Action{{Kind: MarkExited, Object: db.KindContainer, ID: id("c1"), Handler: "runc", ExitCode: 255, ExitReason: "Unknown",
				Reason: "runtime says stopped"}},
		},
		{
			name: "running row, runtime says stopped, monitor still alive, no exit file yet: wait for it",
			snap: func() Snapshot {
				l := live(LiveStopped, "c1")
				c := l[id("c1")]
				c.MonitorAlive = true
				l[id("c1")] = c
				return Snapshot{Sandboxes: []db.Sandbox{podA}, Containers: []db.Container{container("c1", "a", db.ContainerRunning, old)},
					Stored: stored("c1"), Live: l}
			}(),
			want: nil,
		},
		{
			name: "young running row is left alone even if the runtime lost it",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Containers: []db.Container{container("c1", "a", db.ContainerRunning, young)},
				Stored: stored("c1"), Live: live(LiveRunning)},
			want: nil,
		},
		{
			name: "exited row stays exited while its storage remains",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Containers: []db.Container{container("c1", "a", db.ContainerExited, old)},
				Stored: stored("c1"), Live: live(LiveStopped, "c1")},
			want: nil,
		},
		{
			name: "old creating container that the runtime created: finish",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Containers: []db.Container{container("c1", "a", db.ContainerCreating, old)},
				Stored: stored("c1"), Live: live(LiveCreated, "c1")},
			want: []Action{{Kind: FinishOrRollback, Object: db.KindContainer, ID: id("c1"), Handler: "runc", FinishTo: db.ContainerCreated,
				Reason: "was left creating; runtime has it created"}},
		},
		{
			name: "old creating container that the runtime created but whose monitor died: roll back",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Containers: []db.Container{container("c1", "a", db.ContainerCreating, old)},
				Stored: stored("c1"), Live: map[string]Live{id("c1"): {ID: id("c1"), Handler: "runc", Status: LiveCreated}}},
			want: []Action{{Kind: FinishOrRollback, Object: db.KindContainer, ID: id("c1"), Handler: "runc",
				Reason: "was left creating; runtime has it created, without a monitor"}},
		},
		{
			name: "old created container that the runtime runs: finish the start with its pid",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Containers: []db.Container{container("c1", "a", db.ContainerCreated, old)},
				Stored: stored("c1"), Live: map[string]Live{id("c1"): {ID: id("c1"), Handler: "runc", Status: LiveRunning, PID: 42, PIDStart: 7, MonitorAlive: true}}},
			want: []Action{{Kind: FinishOrRollback, Object: db.KindContainer, ID: id("c1"), Handler: "runc", FinishTo: db.ContainerRunning,
				PID: 42, PIDStart: 7, Reason: "was left created; runtime has it running"}},
		},
		{
			name: "ready pod whose IP was released: notready",
			snap: Snapshot{Sandboxes: []db.Sandbox{func() db.Sandbox {
				sb := sandbox("a", db.SandboxReady, old)
				sb.NetNSPath, sb.IPs = "/run/crisp/netns/"+id("a"), db.StringList{"10.0.0.2"}
				return sb
			}()}, Stored: stored(), Live: live(LiveRunning), IPsObserved: true,
				Resources: []Resource{{Object: ObjNetNS, Owner: id("a"), Path: "/run/crisp/netns/" + id("a")}}},
			want: []Action{
				{Kind: MarkExited, Object: db.KindPod, ID: id("a"), Handler: "runc", Reason: "its IP addresses were released"},
				{Kind: Clean, Object: ObjNetNS, ID: id("a"), Name: "/run/crisp/netns/" + id("a"), Reason: "its pod is not ready"},
			},
		},
		{
			name: "old creating container without runtime container: roll back",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Containers: []db.Container{container("c1", "a", db.ContainerCreating, old)},
				Stored: stored("c1"), Live: live(LiveRunning)},
			want: []Action{{Kind: FinishOrRollback, Object: db.KindContainer, ID: id("c1"), Handler: "runc", Reason: "was left creating"}},
		},
		{
			name: "young creating container is left alone",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Containers: []db.Container{container("c1", "a", db.ContainerCreating, young)},
				Stored: stored(), Live: live(LiveRunning)},
			want: nil,
		},
		{
			name: "old removing container: finish the removal",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Containers: []db.Container{container("c1", "a", db.ContainerRemoving, old)},
				Stored: stored("c1"), Live: live(LiveStopped, "c1")},
			want: []Action{{Kind: FinishOrRollback, Object: db.KindContainer, ID: id("c1"), Handler: "runc", Reason: "was left removing"}},
		},
		{
			name: "old creating sandbox: roll back it and its containers, containers first",
			snap: Snapshot{Sandboxes: []db.Sandbox{sandbox("b", db.SandboxCreating, old)},
				Containers: []db.Container{container("c2", "b", db.ContainerCreated, young)}, Stored: stored("c2"), Live: live(LiveRunning)},
			want: []Action{
				{Kind: FinishOrRollback, Object: db.KindContainer, ID: id("c2"), Handler: "runc", Reason: "its pod was left creating"},
				{Kind: FinishOrRollback, Object: db.KindPod, ID: id("b"), Handler: "runc", Reason: "was left creating"},
			},
		},
		{
			name: "young creating sandbox is left alone",
			snap: Snapshot{Sandboxes: []db.Sandbox{sandbox("b", db.SandboxCreating, young)}, Stored: stored(), Live: live(LiveRunning)},
			want: nil,
		},
		{
			name: "ready sandbox whose infra stopped: mark exited (notready)",
			snap: Snapshot{Sandboxes: []db.Sandbox{withInfra(podA, "i1")}, Stored: stored("i1"), Live: live(LiveStopped, "i1")},
			want: []Action{{Kind: MarkExited, Object: db.KindPod, ID: id("a"), Handler: "runc", Reason: "infra container not running"}},
		},
		{
			name: "sandbox whose infra is gone everywhere and no containers: forget",
			snap: Snapshot{Sandboxes: []db.Sandbox{withInfra(podA, "i1")}, Stored: stored(), Live: live(LiveRunning)},
			want: []Action{{Kind: Forget, Object: db.KindPod, ID: id("a"), Handler: "runc", Reason: "infra gone from storage and runtime"}},
		},
		{
			name: "runtime container with no storage and no row: orphan",
			snap: Snapshot{Stored: stored(), Live: live(LiveRunning, "x1")},
			want: []Action{{Kind: Orphan, Object: db.KindContainer, ID: id("x1"), Handler: "runc", Reason: "in runtime runc, not in storage nor the database"}},
		},
		{
			name: "name whose owner has no row: release; young one: kept",
			snap: Snapshot{Names: []db.Name{
				{Kind: db.KindPod, Name: "stale", OwnerID: id("z"), ReservedAt: old},
				{Kind: db.KindPod, Name: "fresh", OwnerID: id("y"), ReservedAt: young},
				{Kind: db.KindPod, Name: "pod-a", OwnerID: id("a"), ReservedAt: old},
			}, Sandboxes: []db.Sandbox{podA}},
			want: []Action{{Kind: Release, Object: db.KindPod, ID: id("z"), Name: "stale", Reason: "reserved for " + id("z") + ", which has no row"}},
		},
		{
			name: "node not observed: only names are repaired, rows are not forgotten",
			snap: Snapshot{Sandboxes: []db.Sandbox{podA}, Containers: []db.Container{container("c1", "a", db.ContainerRunning, old)}},
			want: nil,
		},
		{
			name: "order: adopt pod before container, forget container before pod",
			snap: Snapshot{
				Sandboxes:  []db.Sandbox{withInfra(sandbox("p", db.SandboxNotReady, old), "gone")},
				Containers: []db.Container{container("c9", "p", db.ContainerExited, old)},
				Stored: map[string]Record{
					id("q"):  {ID: id("q"), Kind: db.KindPod, Created: now.Add(-time.Hour)},
					id("c8"): {ID: id("c8"), Kind: db.KindContainer, SandboxID: id("q"), Created: now.Add(-time.Hour)},
				},
				Live: live(LiveRunning),
			},
			want: []Action{
				{Kind: Adopt, Object: db.KindPod, ID: id("q"), SandboxState: db.SandboxReady, Reason: "in a pod dir, not in the database"},
				{Kind: Adopt, Object: db.KindContainer, ID: id("c8"), ContainerState: db.ContainerExited, ExitCode: 255, ExitReason: "Unknown",
					Reason: "in storage, not in the database; not running"},
				{Kind: Forget, Object: db.KindContainer, ID: id("c9"), Handler: "runc", Reason: "gone from storage and runtime"},
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

// storedIn is container records of pod.
func storedIn(pod string, tags ...string) map[string]Record {
	m := stored(tags...)
	for k, r := range m {
		r.SandboxID = id(pod)
		m[k] = r
	}
	return m
}

func livePID(status LiveStatus, pid int, tags ...string) map[string]Live {
	m := live(status, tags...)
	for k, l := range m {
		l.PID = pid
		m[k] = l
	}
	return m
}

func withInfra(sb db.Sandbox, tag string) db.Sandbox {
	sb.InfraID = id(tag)
	return sb
}
