package db

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func TestSandboxAndContainerLifecycle(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()

	sb, created, err := s.CreateSandbox(ctx, testSandbox("web"))
	if err != nil || !created || sb.State != SandboxCreating {
		t.Fatalf("CreateSandbox() = %v created=%v state=%s", err, created, sb.State)
	}
	// Containers need a ready sandbox; the failed attempt leaves no name.
	c := testContainer(sb.ID, "app")
	if _, _, err := s.CreateContainer(ctx, c); !errors.Is(err, ErrWrongState) {
		t.Errorf("CreateContainer(sandbox creating) = %v, want ErrWrongState", err)
	}
	if _, err := s.NameOwner(ctx, KindContainer, c.Name); !errors.Is(err, ErrNotFound) {
		t.Errorf("container name after refused create: %v, want ErrNotFound", err)
	}
	if _, _, err := s.CreateContainer(ctx, testContainer(NewID(), "lost")); !errors.Is(err, ErrNotFound) {
		t.Errorf("CreateContainer(unknown sandbox) = %v, want ErrNotFound", err)
	}
	if err := s.SetSandboxState(ctx, sb.ID, SandboxReady, SandboxCreating); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSandboxState(ctx, sb.ID, SandboxReady, SandboxCreating); !errors.Is(err, ErrWrongState) {
		t.Errorf("SetSandboxState(ready from creating) twice = %v, want ErrWrongState", err)
	}
	if err := s.SetSandboxState(ctx, NewID(), SandboxReady, SandboxCreating); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetSandboxState(unknown) = %v, want ErrNotFound", err)
	}

	c, created, err = s.CreateContainer(ctx, c)
	if err != nil || !created {
		t.Fatalf("CreateContainer() = %v", err)
	}
	if err := s.SetContainerState(ctx, c.ID, ContainerCreated, ContainerCreating); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkContainerStarted(ctx, c.ID, Started{PID: 42, PIDStart: 7, At: 100}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkContainerStarted(ctx, c.ID, Started{PID: 43}); !errors.Is(err, ErrWrongState) {
		t.Errorf("MarkContainerStarted twice = %v, want ErrWrongState", err)
	}
	if err := s.MarkContainerExited(ctx, c.ID, Exit{Code: 3, Reason: "Error", At: 200}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkContainerExited(ctx, c.ID, Exit{Code: 255, Reason: "Unknown"}); !errors.Is(err, ErrWrongState) {
		t.Errorf("MarkContainerExited twice = %v, want ErrWrongState (first exit kept)", err)
	}
	got, err := s.Container(ctx, c.ID)
	if err != nil || got.State != ContainerExited || got.ExitCode == nil || *got.ExitCode != 3 || got.PID != 42 || got.StartedAt != 100 || got.FinishedAt != 200 {
		t.Errorf("Container() = %+v, %v; want exited 3, pid 42, started 100, finished 200", got, err)
	}
	if err := s.DeleteSandbox(ctx, sb.ID); !errors.Is(err, ErrInUse) {
		t.Errorf("DeleteSandbox(with container) = %v, want ErrInUse", err)
	}
	if err := s.DeleteContainer(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteContainer(ctx, c.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteContainer twice = %v, want ErrNotFound", err)
	}
	if err := s.DeleteSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if names, _ := s.Names(ctx); len(names) != 0 {
		t.Errorf("Names() after deleting all = %v, want none", names)
	}

	// The journal saw every transition, written by triggers.
	evs, err := s.Events(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range evs {
		types = append(types, e.Kind+":"+e.Type)
	}
	want := []string{"pod:creating", "pod:ready", "container:creating", "container:created", "container:running", "container:exited", "container:deleted", "pod:deleted"}
	if !reflect.DeepEqual(types, want) {
		t.Errorf("events = %v, want %v", types, want)
	}
}

func TestListFilters(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	web := mustReadySandbox(t, s, "web")
	db := mustReadySandbox(t, s, "db")
	a := mustCreateContainer(t, s, web.ID, "a")
	b := mustCreateContainer(t, s, web.ID, "b")
	c := mustCreateContainer(t, s, db.ID, "a")
	s.SetContainerState(ctx, b.ID, ContainerCreated, ContainerCreating)

	ids := func(cs []Container) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		sort.Strings(out)
		return out
	}
	sorted := func(xs ...string) []string { sort.Strings(xs); return xs }
	tests := []struct {
		name string
		f    ContainerFilter
		want []string
	}{
		{"all", ContainerFilter{}, sorted(a.ID, b.ID, c.ID)},
		{"by sandbox", ContainerFilter{SandboxID: web.ID}, sorted(a.ID, b.ID)},
		{"by state", ContainerFilter{State: ContainerCreated}, sorted(b.ID)},
		{"by label", ContainerFilter{Labels: map[string]string{"role": "a"}}, sorted(a.ID, c.ID)},
		{"by label and sandbox", ContainerFilter{SandboxID: db.ID, Labels: map[string]string{"role": "a"}}, sorted(c.ID)},
		{"label no match", ContainerFilter{Labels: map[string]string{"role": "a", "x": "y"}}, nil},
		{"by id prefix", ContainerFilter{IDPrefix: b.ID[:10]}, sorted(b.ID)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListContainers(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ids(got), tt.want) {
				t.Errorf("ListContainers(%+v) = %v, want %v", tt.f, ids(got), tt.want)
			}
		})
	}
	pods, err := s.ListSandboxes(ctx, SandboxFilter{Labels: map[string]string{"app": "db"}, State: SandboxReady})
	if err != nil || len(pods) != 1 || pods[0].ID != db.ID {
		t.Errorf("ListSandboxes(app=db, ready) = %v, %v; want only db", pods, err)
	}
	if pods, _ := s.ListSandboxes(ctx, SandboxFilter{IDPrefix: web.ID[:12]}); len(pods) != 1 || pods[0].ID != web.ID || pods[0].Labels["app"] != "web" {
		t.Errorf("ListSandboxes(prefix) = %+v, want web with its labels", pods)
	}
}

// Every named query runs at least once against a real database. Adding a
// query without adding it here fails the test.
func TestEveryQueryRuns(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	var sb Sandbox
	var c Container
	ok := func(err error) error { return err }
	exercise := []struct {
		query string
		run   func() error
	}{
		{"CreateMigrationsTable", func() error { return nil }}, // run by Open
		{"RecordMigration", func() error { return nil }},       // run by Open
		{"AppliedMigrations", func() error { _, err := s.SchemaVersion(ctx); return err }},
		{"QuickCheck", func() error { return s.QuickCheck(ctx) }},
		{"SQLiteVersion", func() error {
			v, err := s.SQLiteVersion(ctx)
			if err == nil && !strings.HasPrefix(v, "3.") {
				err = fmt.Errorf("SQLiteVersion() = %q", v)
			}
			return err
		}},
		{"ReserveName", func() error { return s.ReserveName(ctx, KindPod, "n", "owner") }},
		{"GetName", func() error { _, err := s.NameOwner(ctx, KindPod, "n"); return err }},
		{"ListNames", func() error { _, err := s.Names(ctx); return err }},
		{"ReleaseName", func() error { return s.ReleaseName(ctx, KindPod, "n", "owner") }},
		{"InsertSandbox", func() error { sb = mustReadySandbox(t, s, "web"); return nil }},
		{"UpdateSandboxState", func() error { return ok(nil) }}, // mustReadySandbox
		{"MarkSandboxReady", func() error {
			sb, _, err := s.CreateSandbox(ctx, testSandbox("net"))
			if err != nil {
				return err
			}
			if err := s.MarkSandboxReady(ctx, sb.ID, Ready{NetNSPath: "/run/x", IPs: []string{"10.0.0.2"}}); err != nil {
				return err
			}
			got, err := s.Sandbox(ctx, sb.ID)
			if err == nil && (got.State != SandboxReady || got.IPs[0] != "10.0.0.2" || got.NetNSPath != "/run/x") {
				err = fmt.Errorf("after MarkSandboxReady: %+v", got)
			}
			if err == nil && !errors.Is(s.MarkSandboxReady(ctx, sb.ID, Ready{}), ErrWrongState) {
				err = errors.New("MarkSandboxReady twice did not fail with ErrWrongState")
			}
			return err
		}},
		{"GetSandbox", func() error { _, err := s.Sandbox(ctx, sb.ID); return err }},
		{"ResolveSandboxID", func() error { _, err := s.ResolveSandboxID(ctx, sb.ID[:5]); return err }},
		{"ListSandboxes", func() error { _, err := s.ListSandboxes(ctx, SandboxFilter{}); return err }},
		{"ListSandboxesByLabels", func() error {
			_, err := s.ListSandboxes(ctx, SandboxFilter{Labels: map[string]string{"app": "web"}})
			return err
		}},
		{"InsertContainer", func() error { c = mustCreateContainer(t, s, sb.ID, "app"); return nil }},
		{"GetContainer", func() error { _, err := s.Container(ctx, c.ID); return err }},
		{"ResolveContainerID", func() error { _, err := s.ResolveContainerID(ctx, c.ID[:5]); return err }},
		{"ListContainers", func() error { _, err := s.ListContainers(ctx, ContainerFilter{}); return err }},
		{"ListContainersByLabels", func() error {
			_, err := s.ListContainers(ctx, ContainerFilter{Labels: map[string]string{"role": "app"}})
			return err
		}},
		{"UpdateContainerState", func() error { return s.SetContainerState(ctx, c.ID, ContainerCreated, ContainerCreating) }},
		{"SetContainerResources", func() error {
			if err := s.SetContainerResources(ctx, c.ID, `{"cpuShares":"512"}`); err != nil {
				return err
			}
			got, err := s.Container(ctx, c.ID)
			if err == nil && got.Resources != `{"cpuShares":"512"}` {
				err = fmt.Errorf("resources after SetContainerResources = %q", got.Resources)
			}
			return err
		}},
		{"MarkContainerCreated", func() error {
			side := mustCreateContainer(t, s, sb.ID, "side")
			p := Process{RunUser: `{"uid":1000,"gid":1000}`, Resources: `{}`, StopSignal: 3}
			if err := s.MarkContainerCreated(ctx, side.ID, p); err != nil {
				return err
			}
			got, err := s.Container(ctx, side.ID)
			if err == nil && (got.State != ContainerCreated || got.RunUser != p.RunUser || got.StopSignal != 3) {
				err = fmt.Errorf("after MarkContainerCreated: %+v", got)
			}
			if err == nil && !errors.Is(s.MarkContainerCreated(ctx, side.ID, p), ErrWrongState) {
				err = errors.New("MarkContainerCreated twice did not fail with ErrWrongState")
			}
			if err := s.DeleteContainer(ctx, side.ID); err != nil {
				return err
			}
			return err
		}},
		{"MarkContainerStarted", func() error { return s.MarkContainerStarted(ctx, c.ID, Started{PID: 1}) }},
		{"MarkContainerExited", func() error { return s.MarkContainerExited(ctx, c.ID, Exit{Code: 0}) }},
		{"CountContainersByStateAndHandler", func() error {
			counts, err := s.CountContainers(ctx)
			if err == nil && (len(counts) != 1 || counts[0].State != ContainerExited || counts[0].Handler != sb.Handler || counts[0].N != 1) {
				err = fmt.Errorf("CountContainers() = %+v, want 1 exited on %q", counts, sb.Handler)
			}
			return err
		}},
		{"DeleteContainer", func() error { return s.DeleteContainer(ctx, c.ID) }},
		{"CountContainersInSandbox", func() error { return s.DeleteSandbox(ctx, sb.ID) }},
		{"DeleteSandbox", func() error { return nil }}, // previous line
		{"InsertEvent", func() error { return s.AppendEvent(ctx, Event{Kind: "node", ObjectID: "node", Type: "test"}) }},
		{"ListEvents", func() error { _, err := s.Events(ctx, 0, 10); return err }},
		{"LastEventSeq", func() error { _, err := s.LastEventSeq(ctx); return err }},
		{"ListEventsWithSandbox", func() error { _, err := s.EventsWithSandbox(ctx, 0, 10); return err }},
		{"InsertReconcileRun", func() error {
			return s.RecordReconcileRun(ctx, ReconcileRun{Trigger: "admin", Counts: IntMap{"adopt": 1}, Actions: 1})
		}},
		{"ListReconcileRuns", func() error {
			runs, err := s.ReconcileRuns(ctx, 5)
			if err == nil && (len(runs) != 1 || runs[0].Counts["adopt"] != 1) {
				err = errors.New("reconcile run did not round-trip")
			}
			return err
		}},
		{"GetNodeValue", func() error {
			if v, err := s.NodeValue(ctx, NodeBootID); err != nil || v != "" {
				return fmt.Errorf("NodeValue() of nothing = %q, %v", v, err)
			}
			return nil
		}},
		{"SetNodeValue", func() error {
			for _, want := range []string{"boot-1", "boot-2"} {
				if err := s.SetNodeValue(ctx, NodeBootID, want); err != nil {
					return err
				}
				if v, err := s.NodeValue(ctx, NodeBootID); err != nil || v != want {
					return fmt.Errorf("NodeValue() = %q, %v; want %q", v, err, want)
				}
			}
			return nil
		}},
	}
	covered := map[string]bool{}
	for _, e := range exercise {
		covered[e.query] = true
		if err := e.run(); err != nil {
			t.Errorf("exercising %s: %v", e.query, err)
		}
	}
	v := reflect.TypeOf(s.q)
	for i := 0; i < v.NumField(); i++ {
		if name := v.Field(i).Name; !covered[name] {
			t.Errorf("query %s is not exercised by TestEveryQueryRuns", name)
		}
	}
}
