package reconciler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/crisp-cri/crisp/db"
)

// fakeNode is storage and runtime in memory: the reconciler's two views.
type fakeNode struct {
	mu        sync.Mutex
	records   map[string]Record
	rows      map[string]Rebuilt // what Rebuild returns
	live      map[string]Live
	exits     map[string]int32
	destroyed []string
	removed   []string
	resources []Resource
	cleaned   []string // object/owner/path
}

func (f *fakeNode) Resources(context.Context) ([]Resource, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Resource(nil), f.resources...), nil
}

func (f *fakeNode) Clean(_ context.Context, r Resource) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, have := range f.resources {
		if have.Owner == r.Owner && have.Path == r.Path {
			f.resources = append(f.resources[:i], f.resources[i+1:]...)
			break
		}
	}
	f.cleaned = append(f.cleaned, string(r.Object)+"/"+r.Owner+"/"+r.Path)
	return nil
}

func (f *fakeNode) Records(context.Context) ([]Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Record
	for _, r := range f.records {
		out = append(out, r)
	}
	return out, nil
}

func (f *fakeNode) Rebuild(_ context.Context, rec Record) (Rebuilt, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rb, ok := f.rows[rec.ID]
	if !ok {
		return Rebuilt{}, fmt.Errorf("record %s: %w", rec.ID, db.ErrNotFound)
	}
	return rb, nil
}

func (f *fakeNode) Remove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.records, id)
	f.removed = append(f.removed, id)
	return nil
}

func (f *fakeNode) List(context.Context) ([]Live, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Live
	for _, l := range f.live {
		out = append(out, l)
	}
	return out, nil
}

func (f *fakeNode) ExitCodes(context.Context) (map[string]int32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.exits, nil
}

func (f *fakeNode) Destroy(_ context.Context, handler, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.live, id)
	f.destroyed = append(f.destroyed, handler+"/"+id)
	return nil
}

func newFakeNode() *fakeNode {
	return &fakeNode{records: map[string]Record{}, rows: map[string]Rebuilt{}, live: map[string]Live{}, exits: map[string]int32{}}
}

func openStore(t *testing.T) *db.Store {
	t.Helper()
	s, err := db.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"), db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newSandbox(name string, state db.SandboxState) db.Sandbox {
	return db.Sandbox{ID: db.NewID(), Name: name, KubeName: name, KubeNamespace: "default", KubeUID: "uid-" + name,
		State: state, Handler: "runc", Trust: "trusted", TrustReason: "default", Config: []byte("{}"), ConfigHash: name}
}

func newContainer(sandboxID, name string, state db.ContainerState) db.Container {
	return db.Container{ID: db.NewID(), SandboxID: sandboxID, Name: name, KubeName: name, Image: "busybox",
		State: state, Config: []byte("{}"), ConfigHash: name}
}

// scene builds, on a real database, one case of every action, with a node
// that disagrees with it in every way the reconciler repairs.
type scene struct {
	store *db.Store
	node  *fakeNode
	rec   *Reconciler
	clock time.Time

	ready, creatingPod, adoptedPod         db.Sandbox
	running, lost, creatingCtr, adoptedCtr db.Container
	orphanID, staleOwner                   string
}

func newScene(t *testing.T) *scene {
	ctx := context.Background()
	sc := &scene{store: openStore(t), node: newFakeNode()}
	sc.rec = New(sc.store, sc.node, sc.node, sc.node, Config{Grace: time.Minute}, quietLog())

	sc.ready = newSandbox("ready", db.SandboxReady)
	sc.creatingPod = newSandbox("half-made", db.SandboxCreating)
	for _, sb := range []db.Sandbox{sc.ready, sc.creatingPod} {
		if err := sc.store.AdoptSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	sc.running = newContainer(sc.ready.ID, "died", db.ContainerRunning)
	sc.lost = newContainer(sc.ready.ID, "lost", db.ContainerExited)
	sc.creatingCtr = newContainer(sc.ready.ID, "half-made-ctr", db.ContainerCreating)
	for _, c := range []db.Container{sc.running, sc.lost, sc.creatingCtr} {
		if err := sc.store.AdoptContainer(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	// The node: "died" exited with 7, "lost" is gone, the creating container
	// got as far as storage, a pod and a container exist only in storage, an
	// unknown container runs, and a name has no owner.
	for _, c := range []db.Container{sc.running, sc.creatingCtr} {
		sc.node.records[c.ID] = Record{ID: c.ID, Kind: db.KindContainer}
	}
	sc.node.exits[sc.running.ID] = 7
	sc.adoptedPod = newSandbox("from-storage", db.SandboxReady)
	sc.adoptedCtr = newContainer(sc.adoptedPod.ID, "from-storage-ctr", db.ContainerRunning)
	sc.node.records[sc.adoptedPod.ID] = Record{ID: sc.adoptedPod.ID, Kind: db.KindPod}
	sc.node.records[sc.adoptedCtr.ID] = Record{ID: sc.adoptedCtr.ID, Kind: db.KindContainer, SandboxID: sc.adoptedPod.ID}
	sc.node.rows[sc.adoptedPod.ID] = Rebuilt{Sandbox: &sc.adoptedPod}
	sc.node.rows[sc.adoptedCtr.ID] = Rebuilt{Container: &sc.adoptedCtr}
	sc.node.live[sc.adoptedCtr.ID] = Live{ID: sc.adoptedCtr.ID, Handler: "runc", Status: LiveRunning}
	sc.orphanID = db.NewID()
	sc.node.live[sc.orphanID] = Live{ID: sc.orphanID, Handler: "runsc", Status: LiveRunning}
	sc.staleOwner = db.NewID()
	if err := sc.store.ReserveName(ctx, db.KindContainer, "stale-name", sc.staleOwner); err != nil {
		t.Fatal(err)
	}
	// Everything above is an hour old by the reconciler's clock.
	sc.rec.now = func() time.Time { return time.Now().Add(time.Hour) }
	return sc
}

func kinds(outs []Outcome) map[Kind]int {
	m := map[Kind]int{}
	for _, o := range outs {
		m[o.Kind]++
	}
	return m
}

func TestApplyRepairsEveryKind(t *testing.T) {
	ctx := context.Background()
	sc := newScene(t)

	rep, err := sc.rec.Reconcile(ctx, TriggerAdmin, false)
	if err != nil {
		t.Fatalf("Reconcile() = %v", err)
	}
	for _, o := range rep.Outcomes {
		if o.Err != nil {
			t.Errorf("%s %s: %v", o.Kind, o.ID, o.Err)
		}
	}
	want := map[Kind]int{Adopt: 2, Forget: 1, MarkExited: 1, FinishOrRollback: 2, Orphan: 1, Release: 1}
	if got := kinds(rep.Outcomes); !reflect.DeepEqual(got, want) {
		t.Errorf("actions = %v, want %v", got, want)
	}

	// The database now tells the truth.
	c, err := sc.store.Container(ctx, sc.running.ID)
	if err != nil || c.State != db.ContainerExited || c.ExitCode == nil || *c.ExitCode != 7 || c.Reason != "Error" {
		t.Errorf("died container = %+v, %v; want exited 7 Error", c, err)
	}
	for _, gone := range []string{sc.lost.ID, sc.creatingCtr.ID} {
		if _, err := sc.store.Container(ctx, gone); !errors.Is(err, db.ErrNotFound) {
			t.Errorf("container %s: %v, want ErrNotFound", gone, err)
		}
	}
	if _, err := sc.store.Sandbox(ctx, sc.creatingPod.ID); !errors.Is(err, db.ErrNotFound) {
		t.Errorf("half-made pod: %v, want rolled back", err)
	}
	if c, err := sc.store.Container(ctx, sc.adoptedCtr.ID); err != nil || c.State != db.ContainerRunning {
		t.Errorf("adopted container: %+v, %v", c, err)
	}
	if _, err := sc.store.NameOwner(ctx, db.KindContainer, "stale-name"); !errors.Is(err, db.ErrNotFound) {
		t.Errorf("stale name: %v, want released", err)
	}
	if _, err := sc.store.NameOwner(ctx, db.KindContainer, sc.lost.Name); !errors.Is(err, db.ErrNotFound) {
		t.Errorf("forgotten container's name: %v, want released", err)
	}
	sort.Strings(sc.node.destroyed)
	wantDestroyed := []string{"runc/" + sc.creatingCtr.ID, "runsc/" + sc.orphanID}
	sort.Strings(wantDestroyed)
	if !reflect.DeepEqual(sc.node.destroyed, wantDestroyed) {
		t.Errorf("destroyed = %v, want %v", sc.node.destroyed, wantDestroyed)
	}
	// The half-made container, and what is left of the forgotten one.
	sort.Strings(sc.node.removed)
	wantRemoved := []string{sc.creatingCtr.ID, sc.lost.ID}
	sort.Strings(wantRemoved)
	if !reflect.DeepEqual(sc.node.removed, wantRemoved) {
		t.Errorf("removed from storage = %v, want %v", sc.node.removed, wantRemoved)
	}

	// Each repair is journaled; the pass is recorded.
	evs, _ := sc.store.Events(ctx, 0, 1000)
	journaled := map[string]int{}
	for _, e := range evs {
		journaled[e.Type]++
	}
	for k, n := range want {
		if journaled["reconcile."+string(k)] != n {
			t.Errorf("journal has %d reconcile.%s events, want %d", journaled["reconcile."+string(k)], k, n)
		}
	}
	runs, _ := sc.store.ReconcileRuns(ctx, 10)
	if len(runs) != 1 || runs[0].Actions != 8 || runs[0].Trigger != "admin" || runs[0].Counts["adopt"] != 2 || runs[0].Errors != "" {
		t.Errorf("reconcile_runs = %+v, want one admin pass of 8 actions", runs)
	}

	// A second pass finds nothing.
	rep, err = sc.rec.Reconcile(ctx, TriggerPeriodic, false)
	if err != nil || len(rep.Outcomes) != 0 {
		t.Errorf("second pass: %d actions (%+v), %v; want none", len(rep.Outcomes), rep.Outcomes, err)
	}
}

// Apply run twice on the same actions: the second run changes nothing and
// reports no failure.
func TestApplyIdempotent(t *testing.T) {
	ctx := context.Background()
	sc := newScene(t)
	snap, err := Observe(ctx, sc.store, sc.node, sc.node, sc.node)
	if err != nil {
		t.Fatal(err)
	}
	actions := Diff(snap, sc.rec.now(), time.Minute)
	for i, o := range sc.rec.Apply(ctx, actions) {
		if o.Err != nil {
			t.Errorf("first Apply, action %d (%s): %v", i, o.Kind, o.Err)
		}
	}
	before := dump(t, sc.store)
	for i, o := range sc.rec.Apply(ctx, actions) {
		if o.Err != nil {
			t.Errorf("second Apply, action %d (%s %s): %v", i, o.Kind, o.ID, o.Err)
		}
	}
	if after := dump(t, sc.store); !reflect.DeepEqual(before, after) {
		t.Errorf("second Apply changed the database:\nbefore %v\nafter  %v", before, after)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	ctx := context.Background()
	sc := newScene(t)
	before := dump(t, sc.store)
	rep, err := sc.rec.Reconcile(ctx, TriggerAdmin, true)
	if err != nil || len(rep.Outcomes) != 8 {
		t.Fatalf("dry run: %d actions, %v; want 8", len(rep.Outcomes), err)
	}
	if after := dump(t, sc.store); !reflect.DeepEqual(before, after) {
		t.Errorf("dry run changed rows:\nbefore %v\nafter  %v", before, after)
	}
	if len(sc.node.destroyed)+len(sc.node.removed) != 0 {
		t.Errorf("dry run touched the node: destroyed %v removed %v", sc.node.destroyed, sc.node.removed)
	}
	runs, _ := sc.store.ReconcileRuns(ctx, 10)
	if len(runs) != 1 || !runs[0].DryRun {
		t.Errorf("reconcile_runs = %+v, want one dry run recorded", runs)
	}
}

// dump is the reconciler-visible state of the database, for comparisons.
func dump(t *testing.T, s *db.Store) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	sbs, _ := s.ListSandboxes(ctx, db.SandboxFilter{})
	for _, sb := range sbs {
		out = append(out, fmt.Sprintf("pod %s %s %s", sb.Name, sb.ID, sb.State))
	}
	cs, _ := s.ListContainers(ctx, db.ContainerFilter{})
	for _, c := range cs {
		code := "-"
		if c.ExitCode != nil {
			code = fmt.Sprint(*c.ExitCode)
		}
		out = append(out, fmt.Sprintf("ctr %s %s %s %s", c.Name, c.ID, c.State, code))
	}
	ns, _ := s.Names(ctx)
	for _, n := range ns {
		out = append(out, fmt.Sprintf("name %s %s %s", n.Kind, n.Name, n.OwnerID))
	}
	return out
}

// The loop runs passes every interval until its context ends.
func TestRunLoop(t *testing.T) {
	store := openStore(t)
	rec := New(store, nil, nil, nil, Config{Interval: 10 * time.Millisecond}, quietLog())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rec.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runs, err := store.ReconcileRuns(context.Background(), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) >= 3 {
			for _, r := range runs {
				if r.Trigger != "periodic" {
					t.Errorf("run trigger = %s, want periodic", r.Trigger)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d periodic passes after 10s, want 3", len(runs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
