package reconciler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/crisp-cri/crisp/db"
)

// A start on a new boot (faked: the reconciler is told another boot id
// than the database holds) marks ready pods notready and running
// containers exited, and cleans their netns pins, pod pins and IPs, even
// for rows a few seconds old; the next pass on the same boot finds nothing.
func TestRebootMarksPodsAndCleansPins(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	node := newFakeNode()
	if err := store.SetNodeValue(ctx, db.NodeBootID, "boot-1"); err != nil {
		t.Fatal(err)
	}
	pod := newSandbox("web", db.SandboxReady)
	pod.NetNSPath = "/run/crisp/netns/" + pod.ID
	if err := store.AdoptSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	ctr := newContainer(pod.ID, "app", db.ContainerRunning)
	if err := store.AdoptContainer(ctx, ctr); err != nil {
		t.Fatal(err)
	}
	node.records[ctr.ID] = Record{ID: ctr.ID, Kind: db.KindContainer, SandboxID: pod.ID, Created: time.Now()}
	node.records[pod.ID] = Record{ID: pod.ID, Kind: db.KindPod, Created: time.Now(), NetNS: true}
	node.exits[ctr.ID] = 137 // conmon saw it die before the machine went down
	// The run dir survived (it is not always a tmpfs), its mounts did not.
	node.resources = []Resource{
		{Object: ObjNetNS, Owner: pod.ID, Path: pod.NetNSPath, Stale: true},
		{Object: ObjPodDir, Owner: pod.ID, Path: "/run/crisp/pods/" + pod.ID, Stale: true},
		{Object: ObjIP, Owner: pod.ID, Path: "10.213.0.7"},
	}
	rec := New(store, node, node, node, Config{Grace: time.Hour, BootID: "boot-2"}, quietLog())

	rep, err := rec.Reconcile(ctx, TriggerStartup, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kinds(rep.Outcomes), map[Kind]int{MarkExited: 2, Clean: 2}; !equalCounts(got, want) {
		t.Errorf("actions = %v, want %v (%+v)", got, want, rep.Outcomes)
	}
	if sb, _ := store.Sandbox(ctx, pod.ID); sb.State != db.SandboxNotReady {
		t.Errorf("pod state = %s, want notready", sb.State)
	}
	if c, _ := store.Container(ctx, ctr.ID); c.State != db.ContainerExited || c.ExitCode == nil || *c.ExitCode != 137 {
		t.Errorf("container = %s %v, want exited 137 (the exit file)", c.State, c.ExitCode)
	}
	wantCleaned := []string{"netns/" + pod.ID + "/" + pod.NetNSPath, "pod-pins/" + pod.ID + "//run/crisp/pods/" + pod.ID}
	if !equalSets(node.cleaned, wantCleaned) {
		t.Errorf("cleaned = %v, want %v", node.cleaned, wantCleaned)
	}
	if b, _ := store.NodeValue(ctx, db.NodeBootID); b != "boot-2" {
		t.Errorf("recorded boot = %q, want boot-2", b)
	}
	node.resources = nil
	rep, err = rec.Reconcile(ctx, TriggerPeriodic, false)
	if err != nil || len(rep.Outcomes) != 0 {
		t.Errorf("second pass on the same boot: %+v, %v; want nothing", rep.Outcomes, err)
	}
}

// The first start (no boot recorded) is not a reboot.
func TestFirstBootIsNotAReboot(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	node := newFakeNode()
	pod := newSandbox("web", db.SandboxReady)
	if err := store.AdoptSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	node.resources = []Resource{{Object: ObjPodDir, Owner: pod.ID, Path: "/run/crisp/pods/" + pod.ID}}
	rec := New(store, node, node, node, Config{BootID: "boot-1"}, quietLog())
	rep, err := rec.Reconcile(ctx, TriggerStartup, false)
	if err != nil || len(rep.Outcomes) != 0 {
		t.Errorf("first start: %+v, %v; want nothing", rep.Outcomes, err)
	}
	if b, _ := store.NodeValue(ctx, db.NodeBootID); b != "boot-1" {
		t.Errorf("recorded boot = %q, want boot-1", b)
	}
}

// The startup pass adopts what a lost database forgot even when it is only
// seconds old, applies in parallel, and a broken record is reported in the
// pass's errors without keeping the others from being adopted.
func TestStartupAdoptsDespiteABrokenRecord(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	node := newFakeNode()
	pod := newSandbox("web", db.SandboxReady)
	node.records[pod.ID] = Record{ID: pod.ID, Kind: db.KindPod, Created: time.Now()}
	node.rows[pod.ID] = Rebuilt{Sandbox: &pod}
	var ids []string
	for _, name := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"} {
		c := newContainer(pod.ID, name, "")
		node.records[c.ID] = Record{ID: c.ID, Kind: db.KindContainer, SandboxID: pod.ID, Created: time.Now()}
		node.rows[c.ID] = Rebuilt{Container: &c}
		node.live[c.ID] = Live{ID: c.ID, Handler: "runc", Status: LiveRunning, PID: 100}
		ids = append(ids, c.ID)
	}
	broken := ids[3]
	node.rows[broken] = Rebuilt{} // its config.json said nothing usable
	rec := New(store, node, node, node, Config{Grace: time.Hour, Workers: 4}, quietLog())

	rep, err := rec.Reconcile(ctx, TriggerStartup, false)
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, o := range rep.Outcomes {
		if o.Err != nil {
			failed = append(failed, o.ID)
		}
	}
	if len(failed) != 1 || failed[0] != broken {
		t.Errorf("failed actions = %v, want only %s", failed, broken)
	}
	cs, _ := store.ListContainers(ctx, db.ContainerFilter{})
	if len(cs) != 9 {
		t.Errorf("%d containers adopted, want 9", len(cs))
	}
	for _, c := range cs {
		if c.State != db.ContainerRunning || c.PID != 100 {
			t.Errorf("adopted %s: %s pid %d, want running pid 100", c.Name, c.State, c.PID)
		}
	}
	runs, _ := store.ReconcileRuns(ctx, 1)
	if len(runs) != 1 || !strings.Contains(runs[0].Errors, broken) || runs[0].Counts["adopt.failed"] != 1 || runs[0].Trigger != "startup" {
		t.Errorf("reconcile run = %+v, want the broken record in its errors", runs)
	}
	// A periodic pass keeps its grace: the broken record is young, left alone.
	rep, _ = rec.Reconcile(ctx, TriggerPeriodic, false)
	if len(rep.Outcomes) != 0 {
		t.Errorf("periodic pass: %+v, want nothing (young record)", rep.Outcomes)
	}
}

// Clean goes to the node's Leftovers with the resource Diff found, and a
// failure is the action's, not the pass's.
func TestCleanFailureIsReported(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	node := &failingClean{fakeNode: newFakeNode()}
	pod := newSandbox("web", db.SandboxReady)
	if err := store.AdoptSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	ctr := newContainer(pod.ID, "app", db.ContainerExited) // its cgroup outlived it in the runtime
	if err := store.AdoptContainer(ctx, ctr); err != nil {
		t.Fatal(err)
	}
	node.records[ctr.ID] = Record{ID: ctr.ID, Kind: db.KindContainer, SandboxID: pod.ID}
	node.resources = []Resource{{Object: ObjCgroup, Owner: ctr.ID, Path: "/crisp/x"}, {Object: ObjMount, Path: "/m"}}
	rec := New(store, node, node, node, Config{}, quietLog())
	rec.now = func() time.Time { return time.Now().Add(time.Hour) }
	rep, err := rec.Reconcile(ctx, TriggerAdmin, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Outcomes) != 2 {
		t.Fatalf("outcomes = %+v, want 2 cleans", rep.Outcomes)
	}
	for _, o := range rep.Outcomes {
		if (o.Object == ObjMount) != (o.Err != nil) {
			t.Errorf("%s %s: err %v; want only the mount to fail", o.Object, o.Name, o.Err)
		}
	}
	evs, _ := store.Events(ctx, 2, 100) // after the pod's and container's own
	if len(evs) != 1 || evs[0].Kind != "node" || evs[0].Type != "reconcile.clean" || !strings.HasPrefix(evs[0].Detail, "cgroup /crisp/x") {
		t.Errorf("journal = %+v, want the cgroup's clean", evs)
	}
}

type failingClean struct{ *fakeNode }

func (f *failingClean) Clean(ctx context.Context, r Resource) error {
	if r.Object == ObjMount {
		return errors.New("device busy")
	}
	return f.fakeNode.Clean(ctx, r)
}

func equalCounts(a, b map[Kind]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func equalSets(a, b []string) bool {
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		seen[s]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return len(a) == len(b)
}
