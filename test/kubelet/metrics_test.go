package kubelet

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// Metric names in kubelet v1.37 (pkg/kubelet/metrics, pkg/kubelet/prober).
const (
	metricProbes            = "prober_probe_total"
	metricPLEGRelistSum     = "kubelet_pleg_relist_duration_seconds_sum"
	metricPLEGRelistCount   = "kubelet_pleg_relist_duration_seconds_count"
	metricEventedConnected  = "kubelet_evented_pleg_connection_success_count"
	metricEventedConnErrors = "kubelet_evented_pleg_connection_error_count"
	// The evented PLEG observes the latency of every event it receives:
	// this histogram's count is the number of events received.
	metricEventedEvents = "kubelet_evented_pleg_connection_latency_seconds_count"
)

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseMetrics reads the Prometheus text exposition format: comments are
// skipped, label values are unquoted (kubelet's labels hold no commas or
// escaped quotes that matter here).
func parseMetrics(text string) ([]sample, error) {
	var out []sample
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func parseSample(line string) (sample, error) {
	s := sample{labels: map[string]string{}}
	rest := line
	if i := strings.IndexByte(line, '{'); i >= 0 {
		j := strings.LastIndexByte(line, '}')
		if j < i {
			return s, fmt.Errorf("metrics: bad line %q", line)
		}
		s.name = line[:i]
		for _, pair := range splitLabels(line[i+1 : j]) {
			k, v, ok := strings.Cut(pair, "=")
			if !ok {
				return s, fmt.Errorf("metrics: bad label %q in %q", pair, line)
			}
			s.labels[k] = strings.Trim(v, `"`)
		}
		rest = strings.TrimSpace(line[j+1:])
	} else {
		var ok bool
		s.name, rest, ok = strings.Cut(line, " ")
		if !ok {
			return s, fmt.Errorf("metrics: bad line %q", line)
		}
	}
	valueText, _, _ := strings.Cut(strings.TrimSpace(rest), " ") // a timestamp may follow
	v, err := strconv.ParseFloat(valueText, 64)
	if err != nil {
		return s, fmt.Errorf("metrics: bad value in %q: %w", line, err)
	}
	s.value = v
	return s, nil
}

// splitLabels splits `a="x",b="y,z"` at the commas outside quotes.
func splitLabels(s string) []string {
	var parts []string
	inQuotes, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			inQuotes = !inQuotes
		case ',':
			if !inQuotes {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	if start < len(s) {
		parts = append(parts, s[start:])
	}
	return parts
}

// sum adds the values of every sample named name whose labels include
// match.
func sum(samples []sample, name string, match map[string]string) float64 {
	total := 0.0
	for _, s := range samples {
		if s.name != name {
			continue
		}
		ok := true
		for k, v := range match {
			if s.labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			total += s.value
		}
	}
	return total
}

// metrics fetches and parses kubelet's /metrics.
func (n *node) metrics(ctx context.Context) ([]sample, error) {
	return n.metricsAt(ctx, "/metrics")
}

// probeMetrics fetches and parses kubelet's /metrics/probes, where the
// prober's counters are (not on /metrics).
func (n *node) probeMetrics(ctx context.Context) ([]sample, error) {
	return n.metricsAt(ctx, "/metrics/probes")
}

func (n *node) metricsAt(ctx context.Context, path string) ([]sample, error) {
	body, err := n.get(ctx, path)
	if err != nil {
		return nil, err
	}
	return parseMetrics(string(body))
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP prober_probe_total Cumulative number of a probe.
# TYPE prober_probe_total counter
prober_probe_total{container="app",namespace="default",pod="liveness-x",pod_uid="u",probe_type="Liveness",result="successful"} 7
prober_probe_total{container="app",namespace="default",pod="liveness-x",pod_uid="u",probe_type="Liveness",result="failed"} 1
kubelet_pleg_relist_duration_seconds_sum 0.25
kubelet_pleg_relist_duration_seconds_count 10 1700000000000
odd{a="x,y",b="z"} 2
`
	samples, err := parseMetrics(text)
	if err != nil {
		t.Fatalf("parseMetrics() = %v", err)
	}
	tests := []struct {
		name   string
		metric string
		match  map[string]string
		want   float64
	}{
		{"labelled", metricProbes, map[string]string{"probe_type": "Liveness", "result": "successful"}, 7},
		{"all of a name", metricProbes, nil, 8},
		{"no labels", metricPLEGRelistSum, nil, 0.25},
		{"with timestamp", metricPLEGRelistCount, nil, 10},
		{"comma in a value", "odd", map[string]string{"a": "x,y", "b": "z"}, 2},
		{"absent", metricEventedEvents, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sum(samples, tt.metric, tt.match); got != tt.want {
				t.Errorf("sum(%s, %v) = %v, want %v", tt.metric, tt.match, got, tt.want)
			}
		})
	}
	if _, err := parseMetrics("no_value_here"); err == nil {
		t.Errorf("parseMetrics(no value) = nil error, want one")
	}
}
