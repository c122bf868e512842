package db

import (
	"context"
	"errors"
	"regexp"
	"testing"
)

func TestNewID(t *testing.T) {
	hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
	seen := map[string]bool{}
	for range 100 {
		id := NewID()
		if !hex64.MatchString(id) || seen[id] {
			t.Fatalf("NewID() = %q: want 64 fresh hex characters", id)
		}
		seen[id] = true
	}
}

func TestResolvePrefix(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	mk := func(id string) {
		sb := testSandbox(id[:6])
		sb.ID = id
		if _, _, err := s.CreateSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	a := "abc1" + NewID()[4:]
	b := "abc2" + NewID()[4:]
	c := "ffff" + NewID()[4:]
	mk(a)
	mk(b)
	mk(c)
	tests := []struct {
		prefix  string
		want    string
		wantErr error
	}{
		{"abc1", a, nil},
		{a, a, nil},
		{"f", c, nil},
		{"abc", "", ErrAmbiguous},
		{"a", "", ErrAmbiguous},
		{"0", "", ErrNotFound},
		{"abc3", "", ErrNotFound},
		{"", "", ErrInvalid},
		{"ABC", "", ErrNotFound},
		{a + "0", "", ErrNotFound},
		{"06b30207-b0f8-4211-b45a-26df94d303a8", "", ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			got, err := s.ResolveSandboxID(ctx, tt.prefix)
			if got != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("ResolveSandboxID(%q) = %q, %v; want %q, %v", tt.prefix, got, err, tt.want, tt.wantErr)
			}
		})
	}

	sb, _ := s.Sandbox(ctx, a)
	s.SetSandboxState(ctx, sb.ID, SandboxReady, SandboxCreating)
	cont := mustCreateContainer(t, s, sb.ID, "app")
	if got, err := s.ResolveContainerID(ctx, cont.ID[:8]); got != cont.ID || err != nil {
		t.Errorf("ResolveContainerID(short) = %q, %v; want %s", got, err, cont.ID)
	}
	if _, err := s.ResolveContainerID(ctx, a[:8]); !errors.Is(err, ErrNotFound) && cont.ID[:8] != a[:8] {
		t.Errorf("ResolveContainerID(a sandbox's prefix) = %v, want ErrNotFound", err)
	}
}

// The prefix lookup is a range scan on the primary key, not a table scan.
func TestResolveUsesIndex(t *testing.T) {
	s := mustOpen(t)
	for _, q := range []string{s.q.ResolveSandboxID, s.q.ResolveContainerID} {
		var plan []struct {
			ID, Parent, Unused int
			Detail             string
		}
		rows, err := s.db.Query("EXPLAIN QUERY PLAN "+q, "a", "a~")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var p struct {
				ID, Parent, Unused int
				Detail             string
			}
			rows.Scan(&p.ID, &p.Parent, &p.Unused, &p.Detail)
			plan = append(plan, p)
		}
		rows.Close()
		if len(plan) != 1 || !regexp.MustCompile(`SEARCH .* USING (COVERING )?INDEX .*\(id>\? AND id<\?\)`).MatchString(plan[0].Detail) {
			t.Errorf("plan of %q = %+v, want a SEARCH on the primary key range", q, plan)
		}
	}
}
