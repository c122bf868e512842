package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one run measured; it is printed as a table and
// written as JSON with -json.
type Report struct {
	Endpoint   string      `json:"endpoint"`
	Runtime    string      `json:"runtime"` // RuntimeName RuntimeVersion from Version
	Image      string      `json:"image"`
	Pods       int         `json:"pods"`
	Containers int         `json:"containers_per_pod"`
	HotPods    int         `json:"hot_pods"`
	Workers    int         `json:"workers"`
	Burst      int         `json:"burst"`
	Started    time.Time   `json:"started"`
	Walls      []Wall      `json:"walls"`
	Ops        []OpSummary `json:"ops"`
	Restarts   []Restart   `json:"restarts,omitempty"`
	Memory     *Memory     `json:"memory,omitempty"`
	Leftovers  int         `json:"leftovers"` // our pods and containers still listed after cleanup
	Notes      []string    `json:"notes,omitempty"`
}

// Wall is the wall-clock time of one phase.
type Wall struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Restart is one daemon restart: the signal sent, how long the daemon took
// to exit, and how long until it answered, and answered completely, a
// ListContainers with every populated container running.
type Restart struct {
	Signal        string  `json:"signal"`
	ShutdownMs    float64 `json:"shutdown_ms"`
	FirstAnswerMs float64 `json:"start_to_first_answer_ms"` // from the start command
	FullListMs    float64 `json:"start_to_full_list_ms"`    // from the start command
	TotalMs       float64 `json:"signal_to_full_list_ms"`
	Polls         int     `json:"polls"`
}

// Memory is the resident and proportional set size of the daemon and of
// its per-container monitors, from /proc/<pid>/smaps_rollup.
type Memory struct {
	DaemonPID      int    `json:"daemon_pid,omitempty"`
	DaemonRSSKiB   int64  `json:"daemon_rss_kib"`
	DaemonPSSKiB   int64  `json:"daemon_pss_kib"`
	MonitorPattern string `json:"monitor_pattern,omitempty"`
	Monitors       int    `json:"monitors"`
	MonitorRSSKiB  int64  `json:"monitors_rss_kib"`
	MonitorPSSKiB  int64  `json:"monitors_pss_kib"`
}

func (r *Report) wall(name string, d time.Duration) {
	r.Walls = append(r.Walls, Wall{Name: name, Seconds: d.Seconds()})
}

func (r *Report) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// writeTable prints r for a reader: the setup, the wall times, one line
// per operation, the restarts and the memory.
func writeTable(w io.Writer, r *Report) error {
	fmt.Fprintf(w, "runtime %s at %s, image %s\n", r.Runtime, r.Endpoint, r.Image)
	fmt.Fprintf(w, "%d pods x %d containers (%d pods tier=hot), %d workers, burst %d\n",
		r.Pods, r.Containers, r.HotPods, r.Workers, r.Burst)
	section := func(header string, n int, row func(i int) string) error {
		if n == 0 {
			return nil
		}
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, header)
		for i := range n {
			fmt.Fprintln(tw, row(i))
		}
		return tw.Flush()
	}
	if err := section("phase\twall s", len(r.Walls), func(i int) string {
		return fmt.Sprintf("%s\t%.2f", r.Walls[i].Name, r.Walls[i].Seconds)
	}); err != nil {
		return err
	}
	if err := section("op\tn\terr\tp50 ms\tp95 ms\tp99 ms\tmax ms\tsize p50\tsize max", len(r.Ops), func(i int) string {
		o := r.Ops[i]
		line := fmt.Sprintf("%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f", o.Op, o.Count, o.Errors, o.P50ms, o.P95ms, o.P99ms, o.MaxMs)
		if o.SizeMax > 0 {
			line += "\t" + bytesText(o.SizeP50) + "\t" + bytesText(o.SizeMax)
		}
		return line
	}); err != nil {
		return err
	}
	if err := section("restart\tshutdown ms\tstart→answer ms\tstart→full list ms\tsignal→full list ms", len(r.Restarts), func(i int) string {
		rs := r.Restarts[i]
		return fmt.Sprintf("%s\t%.0f\t%.0f\t%.0f\t%.0f", rs.Signal, rs.ShutdownMs, rs.FirstAnswerMs, rs.FullListMs, rs.TotalMs)
	}); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if m := r.Memory; m != nil {
		fmt.Fprintf(w, "memory: daemon (pid %d) RSS %s PSS %s; %d monitors RSS %s PSS %s; daemon+monitors PSS %s\n",
			m.DaemonPID, kibText(m.DaemonRSSKiB), kibText(m.DaemonPSSKiB), m.Monitors,
			kibText(m.MonitorRSSKiB), kibText(m.MonitorPSSKiB), kibText(m.DaemonPSSKiB+m.MonitorPSSKiB))
	}
	fmt.Fprintf(w, "leftovers after cleanup: %d\n", r.Leftovers)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

// bytesText renders a size in B, KiB or MiB with three significant digits.
func bytesText(n int) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1024*1024:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	default:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1024*1024))
	}
}

func kibText(k int64) string { return fmt.Sprintf("%.1f MiB", float64(k)/1024) }

// writeJSON writes r, indented, to path.
func writeJSON(path string, r *Report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
