package cgstats

import (
	"path/filepath"
	"testing"

	"github.com/crisp-cri/crisp/runtimes/host"
)

// New on a unified host reads the cgroup2 tree alone, even where v1
// hierarchies are mounted too (runc ignores them there), and reports the
// limits of memory.max and pids.max.
func TestNewUnified(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"v2" + cg + "/cpu.stat":       "usage_usec 900\nuser_usec 600\nsystem_usec 300\n",
		"v2" + cg + "/memory.current": "1048576\n",
		"v2" + cg + "/memory.stat":    "anon 524288\nfile 524288\ninactive_file 262144\n",
		"v2" + cg + "/memory.max":     "4194304\n",
		"v2" + cg + "/pids.current":   "2\n",
		"v2" + cg + "/pids.max":       "max\n",
		// A v1 memory hierarchy whose figures must not be read.
		"v1memory" + cg + "/memory.usage_in_bytes": "999\n",
	})
	v2 := filepath.Join(root, "v2")
	r := New(host.Mounts{Unified: v2, V2: []string{v2}, Cgroups: []string{v2},
		V1: map[string]string{"memory": filepath.Join(root, "v1memory")}})
	if !r.Unified() {
		t.Fatal("Unified() = false for a unified host")
	}
	s, err := r.Read(cg)
	if err != nil {
		t.Fatal(err)
	}
	if s.CPU == nil || s.CPU.UsageNanos != 900_000 {
		t.Errorf("CPU = %+v, want 900000 ns from cpu.stat", s.CPU)
	}
	if m := s.Memory; m == nil || m.Usage != 1048576 || m.WorkingSet != 1048576-262144 || m.Limit != 4194304 {
		t.Errorf("Memory = %+v, want usage 1048576, working set 786432, limit 4194304", m)
	}
	if avail, ok := s.Memory.Available(); !ok || avail != 4194304-786432 {
		t.Errorf("Memory.Available() = %d, %v; want %d, true", avail, ok, 4194304-786432)
	}
	if s.Pids == nil || *s.Pids != (Pids{Current: 2}) {
		t.Errorf("Pids = %+v, want 2, unlimited", s.Pids)
	}

	// A hybrid host's cgroup2 mount is only for pressure: v1 counters.
	hybrid := New(host.Mounts{V2: []string{v2}, V1: map[string]string{"memory": filepath.Join(root, "v1memory")}})
	if hybrid.Unified() {
		t.Error("Unified() = true for a hybrid host")
	}
}
