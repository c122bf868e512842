package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteTable(t *testing.T) {
	r := &Report{Runtime: "crisp v1", Endpoint: "unix:///x.sock", Image: "busybox", Pods: 100, Containers: 5,
		HotPods: 20, Workers: 4, Burst: 20,
		Walls:    []Wall{{Name: "populate 100x5, 4 workers", Seconds: 61.234}},
		Ops:      []OpSummary{{Op: "ListContainers all", Count: 50, P50ms: 12.34, P99ms: 20, MaxMs: 21, SizeP50: 204800, SizeMax: 3 << 20}, {Op: "CreateContainer", Count: 500, P50ms: 100}},
		Restarts: []Restart{{Signal: "SIGTERM", ShutdownMs: 20, FirstAnswerMs: 300, FullListMs: 310, TotalMs: 330}},
		Memory:   &Memory{DaemonPID: 7, DaemonPSSKiB: 2048, Monitors: 500, MonitorPSSKiB: 10240},
		Notes:    []string{"hello"}}
	var b strings.Builder
	if err := writeTable(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"runtime crisp v1 at unix:///x.sock",
		"100 pods x 5 containers (20 pods tier=hot), 4 workers, burst 20",
		"populate 100x5, 4 workers  61.23",
		"12.3",
		"200.0 KiB",
		"3.00 MiB",
		"SIGTERM  20",
		"500 monitors",
		"daemon+monitors PSS 12.0 MiB",
		"note: hello",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("writeTable() lacks %q:\n%s", want, out)
		}
	}
	// CreateContainer has no sizes: its line ends after max ms.
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "CreateContainer") && strings.Contains(line, "B") {
			t.Errorf("CreateContainer line shows a size: %q", line)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.json")
	in := &Report{Pods: 3, Ops: []OpSummary{{Op: "x", Count: 2, P99ms: 1.5}}}
	if err := writeJSON(path, in); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out Report
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Pods != 3 || len(out.Ops) != 1 || out.Ops[0] != in.Ops[0] {
		t.Errorf("JSON round trip = %+v, want %+v", out, in)
	}
	if !strings.Contains(string(b), `"p99_ms": 1.5`) {
		t.Errorf("JSON lacks p99_ms: %s", b)
	}
}

func TestBytesText(t *testing.T) {
	for n, want := range map[int]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 << 20: "5.00 MiB"} {
		if got := bytesText(n); got != want {
			t.Errorf("bytesText(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
	}{
		{"endpoint and image", []string{"-endpoint", "unix:///x", "-image", "b"}, false},
		{"start-crispd alone", []string{"-start-crispd", "bin/crispd"}, false},
		{"neither", nil, true},
		{"both", []string{"-endpoint", "unix:///x", "-start-crispd", "bin/crispd"}, true},
		{"endpoint without image", []string{"-endpoint", "unix:///x"}, true},
		{"unknown phase", []string{"-start-crispd", "c", "-phases", "populate,nap"}, true},
		{"hot above one", []string{"-start-crispd", "c", "-hot", "1.5"}, true},
		{"zero workers", []string{"-start-crispd", "c", "-workers", "0"}, true},
		{"bad monitor pattern", []string{"-start-crispd", "c", "-monitor-pattern", "("}, true},
		{"stray argument", []string{"-start-crispd", "c", "extra"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFlags(tt.args, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Errorf("parseFlags(%q) error = %v, want error %v", tt.args, err, tt.wantErr)
			}
		})
	}
	c, err := parseFlags([]string{"-start-crispd", "c", "-phases", " lists, cleanup,"}, io.Discard)
	if err != nil || len(c.phases) != 2 || !c.phases["lists"] || !c.phases["cleanup"] {
		t.Errorf("parseFlags(-phases) = %v, %v; want lists and cleanup", c.phases, err)
	}
}
