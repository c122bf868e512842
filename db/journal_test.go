package db

import (
	"context"
	"reflect"
	"testing"
)

func TestEventsWithSandbox(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	if seq, err := s.LastEventSeq(ctx); err != nil || seq != 0 {
		t.Fatalf("LastEventSeq() of an empty journal = %d, %v; want 0", seq, err)
	}
	sb := mustReadySandbox(t, s, "web")
	c := mustCreateContainer(t, s, sb.ID, "app")
	if err := s.AppendEvent(ctx, Event{Kind: "node", ObjectID: "node", Type: "test"}); err != nil {
		t.Fatal(err)
	}
	start, err := s.LastEventSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}

	evs, err := s.EventsWithSandbox(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.Kind+":"+e.Type+":"+e.SandboxID)
	}
	want := []string{"pod:creating:" + sb.ID, "pod:ready:" + sb.ID, "container:creating:" + sb.ID, "node:test:"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EventsWithSandbox() = %v, want %v", got, want)
	}
	if last := evs[len(evs)-1].Seq; start != last {
		t.Errorf("LastEventSeq() = %d, want the last entry's %d", start, last)
	}

	// Once the container's row is gone, its journal entries no longer
	// name the pod: the reader has to remember it.
	if err := s.DeleteContainer(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	evs, err = s.EventsWithSandbox(ctx, start, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Type != "deleted" || evs[0].ObjectID != c.ID || evs[0].SandboxID != "" {
		t.Errorf("EventsWithSandbox(after %d) = %+v, want the container's deletion with no pod", start, evs)
	}
}

func TestCommitsSignalAfterWrite(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	select {
	case <-s.Commits():
		t.Fatal("Commits() has a token before any write")
	default:
	}
	mustReadySandbox(t, s, "web") // two transactions: the tokens coalesce into one
	select {
	case <-s.Commits():
	default:
		t.Fatal("Commits() has no token after a write committed")
	}
	select {
	case <-s.Commits():
		t.Fatal("Commits() kept a second token; they should coalesce")
	default:
	}

	// A transaction that fails commits nothing and signals nothing.
	if err := s.SetSandboxState(ctx, "no-such-pod", SandboxReady, SandboxCreating); err == nil {
		t.Fatal("SetSandboxState(no-such-pod) succeeded")
	}
	select {
	case <-s.Commits():
		t.Fatal("Commits() has a token after a failed write")
	default:
	}
}
