package main

import (
	"errors"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []int
		p      float64
		want   int
	}{
		{"empty", nil, 50, 0},
		{"one value", []int{7}, 99, 7},
		{"p50 of 1..100", hundred, 50, 50},
		{"p95 of 1..100", hundred, 95, 95},
		{"p99 of 1..100", hundred, 99, 99},
		{"p100 is the max", hundred, 100, 100},
		{"p50 of 1..10 is rank 5", hundred[:10], 50, 5},
		{"p99 of 1..10 is the max", hundred[:10], 99, 10},
		{"p50 of two is the lower", []int{3, 9}, 50, 3},
		{"p51 of two is the upper", []int{3, 9}, 51, 9},
		{"tiny p is the min", hundred, 0.001, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %d, want %d", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestRecorderSummaries(t *testing.T) {
	r := newRecorder()
	for i := 10; i >= 1; i-- { // out of order: the summary sorts
		r.add("List", time.Duration(i)*time.Millisecond, i*100, nil)
	}
	r.add("List", time.Hour, 0, errors.New("boom")) // an error is no sample
	r.add("Create", 1500*time.Microsecond, -1, nil)

	got := r.summaries()
	if len(got) != 2 || got[0].Op != "List" || got[1].Op != "Create" {
		t.Fatalf("summaries() = %+v, want List then Create", got)
	}
	list := got[0]
	want := OpSummary{Op: "List", Count: 10, Errors: 1, P50ms: 5, P95ms: 10, P99ms: 10, MaxMs: 10, SizeP50: 500, SizeMax: 1000}
	if list != want {
		t.Errorf("List summary = %+v, want %+v", list, want)
	}
	if c := got[1]; c.Count != 1 || c.P50ms != 1.5 || c.SizeMax != 0 {
		t.Errorf("Create summary = %+v, want 1 call of 1.5 ms without size", c)
	}
}
