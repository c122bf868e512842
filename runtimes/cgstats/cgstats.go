// Package cgstats reads a cgroup's resource counters straight from the
// cgroup filesystem, cgroup v1 and v2, without running any runtime: CPU
// time, memory (with the working set as cAdvisor counts it), swap, block
// I/O, processes and pressure stall information (PSI). It knows nothing of
// CRI or of containers; callers name a cgroup by its cgroupfs path (like
// "/kubepods/pod1/crisp-<id>"). It imports only runtimes/host.
package cgstats

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/crisp-cri/crisp/runtimes/host"
)

// ErrNotFound is returned by Read for a cgroup that does not exist (the
// container stopped and its runtime removed the cgroup, or it never had
// one).
var ErrNotFound = errors.New("cgroup not found")

// Sample is one reading of a cgroup's counters. A nil part is one the
// kernel does not expose for this cgroup (no such controller, no swap
// accounting, no PSI).
type Sample struct {
	Time   time.Time
	CPU    *CPU
	Memory *Memory
	Swap   *Swap
	IO     *IO
	Pids   *Pids
	// Spec is the CPU limits set on the cgroup (PartDetail).
	Spec *Spec
	// Tasks counts the cgroup's processes and their open files
	// (PartTasks).
	Tasks *Tasks
}

// CPU is cumulative CPU time, in nanoseconds.
type CPU struct {
	UsageNanos  uint64
	UserNanos   uint64 // 0 where the kernel does not split it
	SystemNanos uint64
	// Throttling is nil without the cpu controller.
	Throttling *Throttling
	PSI        *PSI
}

// Throttling is the CFS bandwidth counters: periods with a quota in
// force, those in which the cgroup ran out of it, and the time it waited.
type Throttling struct {
	Periods          uint64
	ThrottledPeriods uint64
	ThrottledNanos   uint64
}

// Spec is what the cgroup is allowed, as cAdvisor reports a container's
// spec: 0 where no limit is set.
type Spec struct {
	CPUShares       uint64 // v2: cpu.weight converted back to shares
	CPUPeriodMicros uint64
	CPUQuotaMicros  uint64
	// MemorySwapLimit is the kernel's swap limit file: memory plus swap
	// on v1 (memsw), swap alone on v2. 0 without swap accounting.
	MemorySwapLimit uint64
}

// Tasks is the processes of the cgroup and of every cgroup beneath it,
// with their open file descriptors and how many of those are sockets.
type Tasks struct {
	Processes       uint64
	FileDescriptors uint64
	Sockets         uint64
}

// Memory is the cgroup's memory use, in bytes, and its page-fault counts.
type Memory struct {
	Usage uint64
	// WorkingSet is Usage less the inactive file pages, floored at 0:
	// what cAdvisor and kubelet call the working set, and rank evictions
	// by.
	WorkingSet   uint64
	RSS          uint64 // anonymous memory (v1 total_rss, v2 anon)
	Cache        uint64 // page cache (v1 total_cache, v2 file)
	MappedFile   uint64
	ActiveFile   uint64
	InactiveFile uint64
	PageFaults   uint64
	MajorFaults  uint64
	Failcnt      uint64 // times usage hit the limit (v1 failcnt, v2 events "max")
	MaxUsage     uint64 // v1 only: the high-water mark
	Limit        uint64 // 0 when unlimited
	KernelUsage  uint64 // kernel memory charged to the cgroup (PartDetail)
	OOMKills     uint64 // processes the OOM killer killed in it (PartDetail)
	PSI          *PSI
}

// Available is what the cgroup may still use before its limit, as kubelet
// counts it (limit less working set), and whether it has a limit at all.
func (m *Memory) Available() (uint64, bool) {
	if m.Limit == 0 {
		return 0, false
	}
	if m.WorkingSet >= m.Limit {
		return 0, true
	}
	return m.Limit - m.WorkingSet, true
}

// Swap is the cgroup's swap use, in bytes.
type Swap struct {
	Usage uint64
	Limit uint64 // 0 when unlimited
}

// Available is what the cgroup may still swap out, and whether it has a
// swap limit at all.
func (s *Swap) Available() (uint64, bool) {
	if s.Limit == 0 {
		return 0, false
	}
	if s.Usage >= s.Limit {
		return 0, true
	}
	return s.Limit - s.Usage, true
}

// IO is cumulative block I/O over every device.
type IO struct {
	ReadBytes  uint64
	WriteBytes uint64
	Reads      uint64
	Writes     uint64
	// Devices is the bytes by device (PartDetail).
	Devices []DeviceIO
	PSI     *PSI
}

// DeviceIO is the bytes a cgroup read from and wrote to one block device.
type DeviceIO struct {
	Major, Minor          uint32
	ReadBytes, WriteBytes uint64
}

// Pids is the number of tasks in the cgroup.
type Pids struct {
	Current uint64
	Limit   uint64 // 0 when unlimited
}

// PSI is one resource's pressure stall information.
type PSI struct {
	Some PSIData
	Full PSIData
}

// PSIData is one line of a *.pressure file: the share of time some (or
// all) tasks stalled on the resource, averaged over 10, 60 and 300
// seconds (percent), and the total stall time.
type PSIData struct {
	TotalMicros          uint64
	Avg10, Avg60, Avg300 float64
}

// Reader reads cgroups on one host's cgroup mounts. It holds no state
// between reads and is safe for concurrent use.
type Reader struct {
	// v1 maps each cgroup v1 controller to its hierarchy's mount point;
	// when it has "memory" the host is v1 (or hybrid) and the resource
	// counters are read there.
	v1 map[string]string
	// v2 is the cgroup2 mount point, "" if none: the whole story on a
	// unified host, only pressure on a hybrid one (runc places containers
	// in the unified tree too, and PSI works there without controllers).
	v2 string
	// proc is where PartTasks finds processes: /proc, or a test's tree.
	proc string
}

// New returns a Reader over the host's cgroup mounts m (host.ReadMounts).
// On a unified host (m.Unified) that is the cgroup2 tree alone, as runc
// uses it, whatever v1 hierarchies are mounted elsewhere; otherwise the
// v1 hierarchies, with a hybrid host's cgroup2 mount for pressure.
func New(m host.Mounts) *Reader {
	if m.Unified != "" {
		return NewAt(nil, m.Unified)
	}
	r := &Reader{v1: map[string]string{}, proc: "/proc"}
	for ctrl, mnt := range m.V1 {
		r.v1[ctrl] = mnt
	}
	if len(m.V2) > 0 {
		r.v2 = m.V2[0]
	}
	return r
}

// NewAt returns a Reader over explicit mount points: v1 maps controllers
// to their hierarchies (nil on a unified host), v2 is the cgroup2 mount
// ("" if none). Tests point it at fixture directories.
func NewAt(v1 map[string]string, v2 string) *Reader {
	if v1 == nil {
		v1 = map[string]string{}
	}
	return &Reader{v1: v1, v2: v2, proc: "/proc"}
}

// Unified reports whether the resource counters come from cgroup v2.
func (r *Reader) Unified() bool {
	_, v1 := r.v1["memory"]
	return !v1 && r.v2 != ""
}

// Parts says which counters a read gathers: each costs file reads, and a
// caller asking for 200 cgroups at once should read only what it reports.
type Parts uint

const (
	// PartCPU is total CPU time (one file).
	PartCPU Parts = 1 << iota
	// PartMemory is usage, working set, RSS, cache, faults and the limit,
	// and swap where the kernel accounts it (three or four files).
	PartMemory
	// PartIO is block I/O bytes and operations (one or two files).
	PartIO
	// PartPids is the task count and limit (two files).
	PartPids
	// PartPressure is CPU, memory and I/O PSI (three files).
	PartPressure
	// PartDetail adds what only metrics report: the user/system CPU
	// split, CFS throttling, memory failcnt, kernel memory, OOM kills
	// and, on v1, the high-water mark, bytes by device, and the Spec.
	PartDetail
	// PartTasks counts processes, file descriptors and sockets: a walk of
	// /proc/<pid>/fd for every process, the dearest part by far.
	PartTasks

	// AllParts is every counter.
	AllParts = PartCPU | PartMemory | PartIO | PartPids | PartPressure | PartDetail | PartTasks
)

// Read reads every counter of the cgroup at path: ReadParts with
// AllParts.
func (r *Reader) Read(path string) (Sample, error) { return r.ReadParts(path, AllParts) }

// ReadParts reads the counters parts of the cgroup at path (a cgroupfs
// path). It returns an error wrapping ErrNotFound when the cgroup does not
// exist; counters the kernel does not expose are left nil, never
// invented.
func (r *Reader) ReadParts(path string, parts Parts) (Sample, error) {
	path = filepath.Clean("/" + path)
	if r.Unified() {
		return r.readV2(path, parts)
	}
	if _, ok := r.v1["memory"]; !ok {
		return Sample{}, fmt.Errorf("read cgroup %s: no cgroup v1 memory hierarchy and no cgroup2 mount", path)
	}
	return r.readV1(path, parts)
}
