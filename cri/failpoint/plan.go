package failpoint

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// EnvVar arms failpoints in a crisp_failpoints build; see the package
// comment.
const EnvVar = "CRISP_FAILPOINT"

// plan is what CRISP_FAILPOINT armed; a nil plan arms nothing.
type plan struct {
	mu      sync.Mutex
	at      map[string]int // name → the hit that kills (1 = the first)
	hits    map[string]int
	percent float64 // random:<percent>: that share of every hit kills
}

// due counts a hit of name and reports whether it must kill.
func (p *plan) due(name string) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hits[name]++
	if n, ok := p.at[name]; ok && p.hits[name] == n {
		return true
	}
	return p.percent > 0 && rand.Float64()*100 < p.percent
}

// parse reads a CRISP_FAILPOINT value: comma-separated terms, each
// "<name>", "<name>@<n>" or "random:<percent>". Unknown names are errors.
func parse(s string) (*plan, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	p := &plan{at: map[string]int{}, hits: map[string]int{}}
	for _, term := range strings.Split(s, ",") {
		term = strings.TrimSpace(term)
		if v, ok := strings.CutPrefix(term, "random:"); ok {
			pct, err := strconv.ParseFloat(v, 64)
			if err != nil || pct <= 0 || pct > 100 {
				return nil, fmt.Errorf("%s: want a percentage in (0, 100]", term)
			}
			p.percent = pct
			continue
		}
		name, nth, hasNth := strings.Cut(term, "@")
		n := 1
		if hasNth {
			var err error
			if n, err = strconv.Atoi(nth); err != nil || n < 1 {
				return nil, fmt.Errorf("%s: the hit after @ must be a number from 1", term)
			}
		}
		if !slices.Contains(Names, name) {
			return nil, fmt.Errorf("no failpoint %q (see failpoint.Names)", name)
		}
		p.at[name] = n
	}
	return p, nil
}
