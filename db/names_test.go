package db

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// 64 goroutines create a sandbox under one name at once. Exactly one wins;
// with the same config every other call gets the winner back (kubelet's
// retry), with different configs every other call is ErrNameReserved.
func TestConcurrentReserveOneWinner(t *testing.T) {
	for _, sameConfig := range []bool{true, false} {
		name := "different configs"
		if sameConfig {
			name = "same config"
		}
		t.Run(name, func(t *testing.T) {
			s := mustOpen(t)
			ctx := context.Background()
			const n = 64
			type result struct {
				id, got string
				created bool
				err     error
			}
			results := make([]result, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sb := testSandbox("web")
					if !sameConfig {
						sb.ConfigHash = sb.ID
					}
					<-start
					got, created, err := s.CreateSandbox(ctx, sb)
					results[i] = result{id: sb.ID, got: got.ID, created: created, err: err}
				}()
			}
			close(start)
			wg.Wait()

			var winners []result
			for _, r := range results {
				if r.created {
					winners = append(winners, r)
				}
			}
			if len(winners) != 1 {
				t.Fatalf("%d winners, want exactly 1", len(winners))
			}
			winner := winners[0]
			if winner.err != nil || winner.got != winner.id {
				t.Errorf("winner: got %s, %v; want its own id %s", winner.got, winner.err, winner.id)
			}
			for _, r := range results {
				if r.created {
					continue
				}
				switch {
				case sameConfig && (r.err != nil || r.got != winner.id):
					t.Errorf("retry with same config: got %q, %v; want winner %s", r.got, r.err, winner.id)
				case !sameConfig && !errors.Is(r.err, ErrNameReserved):
					t.Errorf("other config: err = %v, want ErrNameReserved", r.err)
				}
			}
			sbs, err := s.ListSandboxes(ctx, SandboxFilter{})
			if err != nil || len(sbs) != 1 || sbs[0].ID != winner.id {
				t.Errorf("ListSandboxes() = %d rows, %v; want only the winner", len(sbs), err)
			}
			if owner, err := s.NameOwner(ctx, KindPod, winner.got); err == nil {
				t.Errorf("a name was reserved under an id: %s", owner)
			}
		})
	}
}

func TestReserveReleaseName(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	a, b := NewID(), NewID()
	if err := s.ReserveName(ctx, KindContainer, "c1", a); err != nil {
		t.Fatalf("ReserveName(c1, a) = %v", err)
	}
	if err := s.ReserveName(ctx, KindContainer, "c1", a); err != nil {
		t.Errorf("ReserveName(c1, a) again = %v, want nil (same owner)", err)
	}
	if err := s.ReserveName(ctx, KindPod, "c1", b); err != nil {
		t.Errorf("ReserveName(pod c1, b) = %v, want nil (kinds are separate registrars)", err)
	}
	err := s.ReserveName(ctx, KindContainer, "c1", b)
	if !errors.Is(err, ErrNameReserved) {
		t.Errorf("ReserveName(c1, b) = %v, want ErrNameReserved", err)
	}
	// A release by a non-owner changes nothing.
	if err := s.ReleaseName(ctx, KindContainer, "c1", b); err != nil {
		t.Fatal(err)
	}
	if owner, err := s.NameOwner(ctx, KindContainer, "c1"); err != nil || owner != a {
		t.Errorf("NameOwner(c1) = %q, %v; want %s", owner, err, a)
	}
	if err := s.ReleaseName(ctx, KindContainer, "c1", a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NameOwner(ctx, KindContainer, "c1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("NameOwner(c1) after release = %v, want ErrNotFound", err)
	}
	if err := s.ReserveName(ctx, KindContainer, "c1", b); err != nil {
		t.Errorf("ReserveName(c1, b) after release = %v", err)
	}
	if err := s.ReserveName(ctx, KindContainer, "", b); !errors.Is(err, ErrInvalid) {
		t.Errorf("ReserveName(empty) = %v, want ErrInvalid", err)
	}
}

// A retry while the first call is still creating waits for it.
func TestWaitSandboxSettles(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	first, _, err := s.CreateSandbox(ctx, testSandbox("web"))
	if err != nil {
		t.Fatal(err)
	}
	retry, created, err := s.CreateSandbox(ctx, testSandbox("web"))
	if err != nil || created || retry.ID != first.ID || retry.State != SandboxCreating {
		t.Fatalf("retry = %s %s created=%v %v; want the first, still creating", retry.ID, retry.State, created, err)
	}
	done := make(chan Sandbox)
	go func() {
		sb, err := s.WaitSandbox(ctx, retry.ID)
		if err != nil {
			t.Errorf("WaitSandbox() = %v", err)
		}
		done <- sb
	}()
	if err := s.SetSandboxState(ctx, first.ID, SandboxReady, SandboxCreating); err != nil {
		t.Fatal(err)
	}
	if sb := <-done; sb.State != SandboxReady {
		t.Errorf("WaitSandbox() state = %s, want ready", sb.State)
	}

	// A creation that is rolled back ends the wait with ErrNotFound.
	c, _, err := s.CreateContainer(ctx, testContainer(first.ID, "app"))
	if err != nil {
		t.Fatal(err)
	}
	go func() { s.DeleteContainer(ctx, c.ID) }()
	if _, err := s.WaitContainer(ctx, c.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("WaitContainer(rolled back) = %v, want ErrNotFound", err)
	}
	// The wait is bounded by the context.
	stuck := mustCreateContainer(t, s, first.ID, "stuck")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.WaitContainer(cctx, stuck.ID); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitContainer(cancelled) = %v, want context.Canceled", err)
	}
}
