package cgstats

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// writeTree writes files (path relative to root → content) under root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const cg = "/kubepods/pod1/crisp-abc"

// hybridFixture is a cgroup v1 host with a cgroup2 mount beside it, as
// this machine is: counters from v1, pressure from the unified tree.
func hybridFixture(t *testing.T) *Reader {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"memory" + cg + "/memory.usage_in_bytes": "10485760\n",
		"memory" + cg + "/memory.stat": "cache 4096\nrss 1\ninactive_file 7\n" +
			"total_cache 3145728\ntotal_rss 6291456\ntotal_mapped_file 1048576\ntotal_inactive_file 2097152\n" +
			"total_active_file 1048576\ntotal_pgfault 1234\ntotal_pgmajfault 5\ntotal_swap 8192\n",
		"memory" + cg + "/memory.limit_in_bytes":       "33554432\n",
		"memory" + cg + "/memory.memsw.limit_in_bytes": "67108864\n",
		"memory" + cg + "/memory.failcnt":              "3\n",
		"memory" + cg + "/memory.max_usage_in_bytes":   "12000000\n",
		"memory" + cg + "/memory.kmem.usage_in_bytes":  "524288\n",
		"memory" + cg + "/memory.oom_control":          "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
		"cpu" + cg + "/cpu.stat":                       "nr_periods 10\nnr_throttled 4\nthrottled_time 3000000000\nnr_bursts 0\n",
		"cpu" + cg + "/cpu.shares":                     "512\n",
		"cpu" + cg + "/cpu.cfs_period_us":              "100000\n",
		"cpu" + cg + "/cpu.cfs_quota_us":               "50000\n",
		"cpuacct" + cg + "/cpuacct.usage":              "5000000000\n",
		"cpuacct" + cg + "/cpuacct.usage_user":         "3000000000\n",
		"cpuacct" + cg + "/cpuacct.usage_sys":          "2000000000\n",
		"blkio" + cg + "/blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n" +
			"8:16 Read 1\n8:16 Write 2\nTotal 12291\n",
		"blkio" + cg + "/blkio.throttle.io_serviced_recursive": "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
		"pids" + cg + "/pids.current":                          "4\n",
		"pids" + cg + "/pids.max":                              "max\n",
		"unified" + cg + "/cpu.pressure":                       "some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=42\n",
		"unified" + cg + "/memory.pressure":                    "some avg10=0.00 avg60=0.00 avg300=0.00 total=7\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=6\n",
		"unified" + cg + "/io.pressure":                        "some avg10=0.00 avg60=0.00 avg300=0.00 total=9\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=8\n",
	})
	return NewAt(map[string]string{
		"memory": filepath.Join(root, "memory"), "cpuacct": filepath.Join(root, "cpuacct"), "cpu": filepath.Join(root, "cpu"),
		"blkio": filepath.Join(root, "blkio"), "pids": filepath.Join(root, "pids"),
	}, filepath.Join(root, "unified"))
}

func TestReadV1(t *testing.T) {
	r := hybridFixture(t)
	if r.Unified() {
		t.Fatal("Unified() = true on a v1 memory hierarchy")
	}
	s, err := r.Read(cg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Time.IsZero() {
		t.Error("sample has no time")
	}
	if s.CPU == nil || *s.CPU != (CPU{UsageNanos: 5e9, UserNanos: 3e9, SystemNanos: 2e9, PSI: s.CPU.PSI, Throttling: s.CPU.Throttling}) {
		t.Errorf("CPU = %+v", s.CPU)
	}
	if thr := s.CPU.Throttling; thr == nil || *thr != (Throttling{Periods: 10, ThrottledPeriods: 4, ThrottledNanos: 3e9}) {
		t.Errorf("CPU throttling = %+v", thr)
	}
	if s.Spec == nil || *s.Spec != (Spec{CPUShares: 512, CPUPeriodMicros: 100000, CPUQuotaMicros: 50000, MemorySwapLimit: 67108864}) {
		t.Errorf("Spec = %+v", s.Spec)
	}
	wantMem := Memory{Usage: 10485760, WorkingSet: 10485760 - 2097152, RSS: 6291456, Cache: 3145728, MappedFile: 1048576,
		ActiveFile: 1048576, InactiveFile: 2097152, PageFaults: 1234, MajorFaults: 5, Failcnt: 3, MaxUsage: 12000000, Limit: 33554432,
		KernelUsage: 524288, OOMKills: 2}
	if s.Memory == nil {
		t.Fatal("Memory = nil")
	}
	gotMem := *s.Memory
	gotMem.PSI = nil
	if gotMem != wantMem {
		t.Errorf("Memory = %+v, want %+v", gotMem, wantMem)
	}
	if avail, ok := s.Memory.Available(); !ok || avail != 33554432-(10485760-2097152) {
		t.Errorf("Memory.Available() = %d, %v", avail, ok)
	}
	if s.Swap == nil || *s.Swap != (Swap{Usage: 8192, Limit: 33554432}) {
		t.Errorf("Swap = %+v, want usage 8192, limit 32 MiB (memsw - memory)", s.Swap)
	}
	if s.IO == nil || s.IO.ReadBytes != 4097 || s.IO.WriteBytes != 8194 || s.IO.Reads != 1 || s.IO.Writes != 2 {
		t.Errorf("IO = %+v", s.IO)
	}
	if d := s.IO.Devices; len(d) != 2 || d[0] != (DeviceIO{Major: 8, Minor: 0, ReadBytes: 4096, WriteBytes: 8192}) ||
		d[1] != (DeviceIO{Major: 8, Minor: 16, ReadBytes: 1, WriteBytes: 2}) {
		t.Errorf("IO devices = %+v", d)
	}
	if s.Pids == nil || *s.Pids != (Pids{Current: 4}) {
		t.Errorf("Pids = %+v", s.Pids)
	}
	if p := s.CPU.PSI; p == nil || p.Some.TotalMicros != 123456 || p.Some.Avg10 != 1.5 || p.Some.Avg60 != 0.25 || p.Full.TotalMicros != 42 {
		t.Errorf("CPU PSI = %+v", p)
	}
	if p := s.Memory.PSI; p == nil || p.Some.TotalMicros != 7 || p.Full.TotalMicros != 6 {
		t.Errorf("memory PSI = %+v", p)
	}
	if p := s.IO.PSI; p == nil || p.Some.TotalMicros != 9 || p.Full.TotalMicros != 8 {
		t.Errorf("IO PSI = %+v", p)
	}
}

// A v1 host without a cgroup2 mount, swap accounting or blkio: those
// parts are nil, the rest still read.
func TestReadV1Partial(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"memory" + cg + "/memory.usage_in_bytes": "100\n",
		"memory" + cg + "/memory.stat":           "total_inactive_file 400\ntotal_rss 50\n",
		"memory" + cg + "/memory.limit_in_bytes": "9223372036854771712\n",
		"cpuacct" + cg + "/cpuacct.usage":        "77\n",
	})
	r := NewAt(map[string]string{"memory": filepath.Join(root, "memory"), "cpuacct": filepath.Join(root, "cpuacct")}, "")
	s, err := r.Read(cg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Memory == nil || s.Memory.WorkingSet != 0 || s.Memory.Limit != 0 || s.Memory.PSI != nil {
		t.Errorf("Memory = %+v, want working set floored at 0, no limit, no PSI", s.Memory)
	}
	if _, ok := s.Memory.Available(); ok {
		t.Error("Available() reports a limit for an unlimited cgroup")
	}
	if s.CPU == nil || s.CPU.UsageNanos != 77 || s.CPU.UserNanos != 0 {
		t.Errorf("CPU = %+v", s.CPU)
	}
	if s.Swap != nil || s.IO != nil || s.Pids != nil {
		t.Errorf("Swap, IO, Pids = %+v, %+v, %+v, want nil", s.Swap, s.IO, s.Pids)
	}
}

func v2Fixture(t *testing.T) *Reader {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		cg + "/cpu.stat":            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 7\nnr_throttled 3\nthrottled_usec 1500\n",
		cg + "/cpu.weight":          "100\n",
		cg + "/cpu.max":             "max 100000\n",
		cg + "/memory.current":      "20000\n",
		cg + "/memory.stat":         "anon 8000\nfile 12000\nkernel 3000\nfile_mapped 100\nactive_file 2000\ninactive_file 5000\npgfault 11\npgmajfault 1\n",
		cg + "/memory.max":          "max\n",
		cg + "/memory.events":       "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n",
		cg + "/memory.swap.current": "4096\n",
		cg + "/memory.swap.max":     "65536\n",
		cg + "/io.stat":             "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n259:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n",
		cg + "/pids.current":        "3\n",
		cg + "/pids.max":            "100\n",
		cg + "/cpu.pressure":        "some avg10=0.00 avg60=0.00 avg300=0.00 total=10\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=5\n",
		cg + "/memory.pressure":     "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
		cg + "/io.pressure":         "some avg10=2.00 avg60=0.00 avg300=0.00 total=3\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
	})
	return NewAt(nil, root)
}

func TestReadV2(t *testing.T) {
	r := v2Fixture(t)
	if !r.Unified() {
		t.Fatal("Unified() = false with only a cgroup2 mount")
	}
	s, err := r.Read(cg)
	if err != nil {
		t.Fatal(err)
	}
	if s.CPU == nil || s.CPU.UsageNanos != 2500000 || s.CPU.UserNanos != 2000000 || s.CPU.SystemNanos != 500000 {
		t.Errorf("CPU = %+v", s.CPU)
	}
	if s.CPU.PSI == nil || s.CPU.PSI.Some.TotalMicros != 10 || s.CPU.PSI.Full.TotalMicros != 5 {
		t.Errorf("CPU PSI = %+v", s.CPU.PSI)
	}
	if m := s.Memory; m == nil || m.Usage != 20000 || m.WorkingSet != 15000 || m.RSS != 8000 || m.Cache != 12000 ||
		m.PageFaults != 11 || m.MajorFaults != 1 || m.Failcnt != 2 || m.Limit != 0 || m.KernelUsage != 3000 || m.OOMKills != 1 || m.PSI == nil {
		t.Errorf("Memory = %+v", m)
	}
	if thr := s.CPU.Throttling; thr == nil || *thr != (Throttling{Periods: 7, ThrottledPeriods: 3, ThrottledNanos: 1500000}) {
		t.Errorf("CPU throttling = %+v", thr)
	}
	// cpu.weight 100 is what runc writes for the default 1024 shares.
	if s.Spec == nil || *s.Spec != (Spec{CPUShares: 2 + 99*262142/9999, CPUPeriodMicros: 100000, MemorySwapLimit: 65536}) {
		t.Errorf("Spec = %+v", s.Spec)
	}
	if s.Swap == nil || *s.Swap != (Swap{Usage: 4096, Limit: 65536}) {
		t.Errorf("Swap = %+v", s.Swap)
	}
	if avail, ok := s.Swap.Available(); !ok || avail != 65536-4096 {
		t.Errorf("Swap.Available() = %d, %v", avail, ok)
	}
	if io := s.IO; io == nil || io.ReadBytes != 101 || io.WriteBytes != 202 || io.Reads != 4 || io.Writes != 6 ||
		io.PSI == nil || io.PSI.Some.Avg10 != 2 || len(io.Devices) != 2 || io.Devices[1] != (DeviceIO{Major: 259, ReadBytes: 1, WriteBytes: 2}) {
		t.Errorf("IO = %+v", io)
	}
	if s.Pids == nil || *s.Pids != (Pids{Current: 3, Limit: 100}) {
		t.Errorf("Pids = %+v", s.Pids)
	}
}

// A cgroup2 directory without the memory and io controllers enabled (as
// in a private cgroup2 mount on a v1 host) still has cpu.stat and PSI.
func TestReadV2NoControllers(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		cg + "/cpu.stat":     "usage_usec 1\nuser_usec 1\nsystem_usec 0\n",
		cg + "/cpu.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
	})
	s, err := NewAt(nil, root).Read(cg)
	if err != nil {
		t.Fatal(err)
	}
	if s.CPU == nil || s.CPU.UsageNanos != 1000 || s.CPU.PSI == nil {
		t.Errorf("CPU = %+v", s.CPU)
	}
	if s.Memory != nil || s.Swap != nil || s.Pids != nil {
		t.Errorf("Memory, Swap, Pids = %+v, %+v, %+v, want nil", s.Memory, s.Swap, s.Pids)
	}
}

func TestReadMissing(t *testing.T) {
	for name, r := range map[string]*Reader{"v1": hybridFixture(t), "v2": v2Fixture(t)} {
		t.Run(name, func(t *testing.T) {
			_, err := r.Read("/kubepods/pod1/crisp-gone")
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("Read(missing) = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestReadMalformed(t *testing.T) {
	r := v2Fixture(t)
	dir := filepath.Join(r.v2, cg)
	if err := os.WriteFile(filepath.Join(dir, "memory.current"), []byte("lots\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(cg); err == nil {
		t.Error("Read() with a malformed memory.current succeeded")
	}
}

// The real host: whatever it is, reading crisp's own cgroup (or the
// root) must not fail, and a v1 or v2 host has memory figures.
func TestReadHostRoot(t *testing.T) {
	s, err := NewAt(map[string]string{"memory": "/sys/fs/cgroup/memory", "cpuacct": "/sys/fs/cgroup/cpuacct"}, "").Read("/")
	if _, statErr := os.Stat("/sys/fs/cgroup/memory/memory.usage_in_bytes"); statErr != nil {
		t.Skip("no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory")
	}
	if err != nil {
		t.Fatal(err)
	}
	if s.Memory == nil || s.Memory.Usage == 0 || s.CPU == nil || s.CPU.UsageNanos == 0 {
		t.Errorf("root cgroup sample = %+v, want memory and cpu", s)
	}
}

// ReadParts reads only what it is asked: no detail, no I/O, no pids.
func TestReadParts(t *testing.T) {
	for name, r := range map[string]*Reader{"v1": hybridFixture(t), "v2": v2Fixture(t)} {
		t.Run(name, func(t *testing.T) {
			s, err := r.ReadParts(cg, PartCPU|PartMemory)
			if err != nil {
				t.Fatal(err)
			}
			// v2's cpu.stat splits user and system in the same file.
			if s.CPU == nil || s.CPU.UsageNanos == 0 || (name == "v1" && s.CPU.UserNanos != 0) || s.CPU.PSI != nil {
				t.Errorf("CPU = %+v, want the total, no PSI", s.CPU)
			}
			if s.Memory == nil || s.Memory.WorkingSet == 0 || s.Memory.Failcnt != 0 || s.Memory.MaxUsage != 0 || s.Memory.PSI != nil {
				t.Errorf("Memory = %+v, want no detail, no PSI", s.Memory)
			}
			if s.IO != nil || s.Pids != nil {
				t.Errorf("IO, Pids = %+v, %+v, want nil", s.IO, s.Pids)
			}
			s, err = r.ReadParts(cg, PartMemory)
			if err != nil || s.CPU != nil || s.Memory == nil {
				t.Errorf("ReadParts(memory) = %+v, %v; want memory only", s, err)
			}
		})
	}
}

// Tasks walk cgroup.procs of the cgroup and its children and count each
// process's open files, sockets apart; a listed process that has exited
// counts as a process with no files.
func TestReadTasks(t *testing.T) {
	r := v2Fixture(t)
	writeTree(t, r.v2, map[string]string{
		cg + "/cgroup.procs":          "10\n11\n",
		cg + "/child/cgroup.procs":    "12\n",
		cg + "/child/cpu.stat":        "usage_usec 1\n",
		"/other/cgroup.procs":         "99\n",
		"/kubepods/cgroup.procs":      "98\n",
		"/kubepods/pod1/cgroup.procs": "",
	})
	proc := t.TempDir()
	for pid, targets := range map[string][]string{
		"10": {"/dev/null", "socket:[1234]", "pipe:[5]"},
		"12": {"socket:[77]"},
		"99": {"/dev/null"},
	} {
		dir := filepath.Join(proc, pid, "fd")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, target := range targets {
			if err := os.Symlink(target, filepath.Join(dir, strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.proc = proc
	s, err := r.ReadParts(cg, PartTasks)
	if err != nil {
		t.Fatal(err)
	}
	if s.Tasks == nil || *s.Tasks != (Tasks{Processes: 3, FileDescriptors: 4, Sockets: 2}) {
		t.Errorf("Tasks = %+v, want 3 processes (10, 11, child's 12), 4 fds, 2 sockets", s.Tasks)
	}
	if s2, _ := r.ReadParts(cg, PartCPU); s2.Tasks != nil || s2.Spec != nil {
		t.Errorf("ReadParts(PartCPU) read tasks %+v or spec %+v", s2.Tasks, s2.Spec)
	}
}
