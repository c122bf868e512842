package chaos

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// summary counts what a chaos run did and what it found. A violation seen
// after several kills in a row (a leak stays until repaired) counts once,
// with the iteration that first saw it.
type summary struct {
	seed           uint64
	started        time.Time
	iterations     int
	randomKills    int
	failpointKills map[string]int
	calls          map[string]int // CRI calls completed, by kind
	retries        int            // kubelet-style retries of an interrupted call
	repairs        map[string]int // reconcile actions taken, by kind
	found          map[violation]*finding
	order          []violation
}

type finding struct {
	first string // the iteration that first saw it, and its kill
	times int
}

func newSummary(seed uint64) *summary {
	return &summary{seed: seed, started: time.Now(), failpointKills: map[string]int{},
		calls: map[string]int{}, repairs: map[string]int{}, found: map[violation]*finding{}}
}

// record adds violations seen at iteration it; it returns the new ones.
func (s *summary) record(it string, vs []violation) []violation {
	var fresh []violation
	for _, v := range vs {
		if f, ok := s.found[v]; ok {
			f.times++
			continue
		}
		s.found[v] = &finding{first: it, times: 1}
		s.order = append(s.order, v)
		fresh = append(fresh, v)
	}
	return fresh
}

// known reports whether every violation in vs was seen before.
func (s *summary) known(vs []violation) bool {
	for _, v := range vs {
		if s.found[v] == nil {
			return false
		}
	}
	return true
}

// byKind counts the distinct violations of each kind.
func (s *summary) byKind() map[string]int {
	out := map[string]int{}
	for _, v := range s.order {
		out[v.kind]++
	}
	return out
}

// String is the invariant summary, for t.Log.
func (s *summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos summary (seed %d, %s)\n", s.seed, time.Since(s.started).Round(time.Second))
	fmt.Fprintf(&b, "  iterations: %d (SIGKILL at a random moment: %d, at a failpoint: %d)\n",
		s.iterations, s.randomKills, sum(s.failpointKills))
	fmt.Fprintf(&b, "  kills per failpoint: %s\n", counts(s.failpointKills))
	fmt.Fprintf(&b, "  CRI calls completed: %s; retries of an interrupted call: %d\n", counts(s.calls), s.retries)
	fmt.Fprintf(&b, "  reconciler repairs: %s\n", counts(s.repairs))
	kinds := s.byKind()
	fmt.Fprintf(&b, "  violations: %d distinct (%s)\n", len(s.order), counts(kinds))
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		n := 0
		for _, v := range s.order {
			if v.kind != k {
				continue
			}
			if n++; n > 3 {
				fmt.Fprintf(&b, "    %s: … %d more\n", k, kinds[k]-3)
				break
			}
			f := s.found[v]
			fmt.Fprintf(&b, "    %s: %s [first at %s; seen %d times]\n", k, v.msg, f.first, f.times)
		}
	}
	return b.String()
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
