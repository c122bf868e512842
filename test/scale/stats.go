package main

import (
	"slices"
	"sync"
	"time"
)

// recorder collects the latency, response size and outcome of every timed
// call, by operation name. It is safe for concurrent use.
type recorder struct {
	mu    sync.Mutex
	ops   map[string]*series
	order []string // first-seen order, so the report follows the run
}

type series struct {
	durs  []time.Duration
	sizes []int // response sizes in bytes; empty for calls whose size is not measured
	errs  int
}

func newRecorder() *recorder { return &recorder{ops: map[string]*series{}} }

// add records one call of op that took d; size < 0 means "not measured".
// A failed call counts as an error and its duration is not a sample.
func (r *recorder) add(op string, d time.Duration, size int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.ops[op]
	if !ok {
		s = &series{}
		r.ops[op] = s
		r.order = append(r.order, op)
	}
	if err != nil {
		s.errs++
		return
	}
	s.durs = append(s.durs, d)
	if size >= 0 {
		s.sizes = append(s.sizes, size)
	}
}

// OpSummary is the summary of one operation's calls.
type OpSummary struct {
	Op       string  `json:"op"`
	Count    int     `json:"count"`
	Errors   int     `json:"errors"`
	P50ms    float64 `json:"p50_ms"`
	P95ms    float64 `json:"p95_ms"`
	P99ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	SizeP50  int     `json:"size_p50_bytes,omitempty"`
	SizeMax  int     `json:"size_max_bytes,omitempty"`
	Measured bool    `json:"-"` // sizes were recorded
}

// summaries returns one summary per operation, in the order the operations
// were first recorded.
func (r *recorder) summaries() []OpSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]OpSummary, 0, len(r.order))
	for _, op := range r.order {
		out = append(out, summarize(op, r.ops[op]))
	}
	return out
}

func summarize(op string, s *series) OpSummary {
	durs := slices.Clone(s.durs)
	slices.Sort(durs)
	sum := OpSummary{Op: op, Count: len(durs), Errors: s.errs,
		P50ms: ms(percentile(durs, 50)), P95ms: ms(percentile(durs, 95)),
		P99ms: ms(percentile(durs, 99)), MaxMs: ms(percentile(durs, 100))}
	if len(s.sizes) > 0 {
		sizes := slices.Clone(s.sizes)
		slices.Sort(sizes)
		sum.SizeP50, sum.SizeMax = percentile(sizes, 50), sizes[len(sizes)-1]
	}
	return sum
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted: the smallest value that at least p% of the values are less than
// or equal to. It returns the zero value for an empty slice.
func percentile[T any](sorted []T, p float64) T {
	var zero T
	n := len(sorted)
	if n == 0 {
		return zero
	}
	// rank = ceil(p/100 * n), computed in integers (p in hundredths) so
	// that 50% of 10 is exactly rank 5, not 5.000000001.
	hundredths := int64(p*100 + 0.5)
	rank := int((hundredths*int64(n) + 9999) / 10000)
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
