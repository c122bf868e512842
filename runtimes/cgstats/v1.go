package cgstats

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"
)

// readV1 reads the cgroup's counters from the v1 hierarchies, and its
// pressure from the cgroup2 mount of a hybrid host when the cgroup is
// there too. memory.usage_in_bytes, which every memory cgroup has, tells
// whether the cgroup exists, without a stat of its own.
func (r *Reader) readV1(path string, parts Parts) (Sample, error) {
	memDir := filepath.Join(r.v1["memory"], path)
	usage, ok, err := readUint(filepath.Join(memDir, "memory.usage_in_bytes"))
	if err != nil {
		return Sample{}, fmt.Errorf("read cgroup %s: %w", path, err)
	}
	if !ok {
		return Sample{}, fmt.Errorf("read cgroup %s: %w", path, ErrNotFound)
	}
	s := Sample{Time: time.Now()}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if parts&PartMemory != 0 {
		s.Memory, s.Swap, err = readMemoryV1(memDir, usage, parts&PartDetail != 0)
		add(err)
	}
	if mnt, ok := r.v1["cpuacct"]; ok && parts&PartCPU != 0 {
		s.CPU, err = readCPUV1(filepath.Join(mnt, path), parts&PartDetail != 0)
		add(err)
	}
	if parts&PartDetail != 0 {
		s.Spec = &Spec{}
		if mnt, ok := r.v1["cpu"]; ok {
			thr, err := readCPUControllerV1(filepath.Join(mnt, path), s.Spec)
			add(err)
			if s.CPU != nil {
				s.CPU.Throttling = thr
			}
		}
		s.Spec.MemorySwapLimit, err = memswLimit(memDir)
		add(err)
	}
	if mnt, ok := r.v1["blkio"]; ok && parts&PartIO != 0 {
		s.IO, err = readIOV1(filepath.Join(mnt, path), parts&PartDetail != 0)
		add(err)
	}
	if parts&PartTasks != 0 {
		s.Tasks, err = r.readTasks(memDir)
		add(err)
	}
	if mnt, ok := r.v1["pids"]; ok && parts&PartPids != 0 {
		s.Pids, err = readPids(filepath.Join(mnt, path))
		add(err)
	}
	if r.v2 != "" && parts&PartPressure != 0 {
		add(r.addPressure(&s, filepath.Join(r.v2, path)))
	}
	if err := errors.Join(errs...); err != nil {
		return Sample{}, fmt.Errorf("read cgroup %s: %w", path, err)
	}
	return s, nil
}

func readMemoryV1(dir string, usage uint64, detail bool) (*Memory, *Swap, error) {
	m := &Memory{Usage: usage}
	b, err := readFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return nil, nil, err
	}
	var swap uint64
	hasSwap := false
	// The total_ counters are hierarchical: a pod's cgroup counts its
	// containers'.
	eachKeyValue(b, func(k string, v uint64) {
		switch k {
		case "total_inactive_file":
			m.InactiveFile = v
		case "total_active_file":
			m.ActiveFile = v
		case "total_rss":
			m.RSS = v
		case "total_cache":
			m.Cache = v
		case "total_mapped_file":
			m.MappedFile = v
		case "total_pgfault":
			m.PageFaults = v
		case "total_pgmajfault":
			m.MajorFaults = v
		case "total_swap": // only with swap accounting
			swap, hasSwap = v, true
		}
	})
	m.WorkingSet = workingSet(m.Usage, m.InactiveFile)
	limit, _, err := readUint(filepath.Join(dir, "memory.limit_in_bytes"))
	if err != nil {
		return nil, nil, err
	}
	if limit < unlimitedV1 {
		m.Limit = limit
	}
	if detail {
		if m.Failcnt, _, err = readUint(filepath.Join(dir, "memory.failcnt")); err != nil {
			return nil, nil, err
		}
		if m.MaxUsage, _, err = readUint(filepath.Join(dir, "memory.max_usage_in_bytes")); err != nil {
			return nil, nil, err
		}
		if m.KernelUsage, _, err = readUint(filepath.Join(dir, "memory.kmem.usage_in_bytes")); err != nil {
			return nil, nil, err
		}
		oom, err := readFile(filepath.Join(dir, "memory.oom_control"))
		if err != nil {
			return nil, nil, err
		}
		eachKeyValue(oom, func(k string, v uint64) {
			if k == "oom_kill" {
				m.OOMKills = v
			}
		})
	}
	if !hasSwap {
		return m, nil, nil
	}
	sw := &Swap{Usage: swap}
	// memsw limits memory plus swap; what is left for swap alone is the
	// difference, when both are set. Without a memory limit there is none
	// to read.
	if m.Limit == 0 {
		return m, sw, nil
	}
	memsw, err := memswLimit(dir)
	if err != nil {
		return nil, nil, err
	}
	if memsw != 0 && memsw >= m.Limit {
		sw.Limit = memsw - m.Limit
	}
	return m, sw, nil
}

// memswLimit is the memory+swap limit of the memory cgroup dir, 0 when
// unlimited or without swap accounting.
func memswLimit(dir string) (uint64, error) {
	v, _, err := readUint(filepath.Join(dir, "memory.memsw.limit_in_bytes"))
	if err != nil || v >= unlimitedV1 {
		return 0, err
	}
	return v, nil
}

// readCPUControllerV1 reads the cpu controller's CFS throttling counters
// and its limits into spec. Its cpu.stat:
//
//	nr_periods 4
//	nr_throttled 1
//	throttled_time 2000000
func readCPUControllerV1(dir string, spec *Spec) (*Throttling, error) {
	b, err := readFile(filepath.Join(dir, "cpu.stat"))
	if err != nil || b == nil {
		return nil, err
	}
	thr := &Throttling{}
	eachKeyValue(b, func(k string, v uint64) {
		switch k {
		case "nr_periods":
			thr.Periods = v
		case "nr_throttled":
			thr.ThrottledPeriods = v
		case "throttled_time":
			thr.ThrottledNanos = v
		}
	})
	if spec.CPUShares, _, err = readUint(filepath.Join(dir, "cpu.shares")); err != nil {
		return nil, err
	}
	if spec.CPUPeriodMicros, _, err = readUint(filepath.Join(dir, "cpu.cfs_period_us")); err != nil {
		return nil, err
	}
	quota, err := readInt(filepath.Join(dir, "cpu.cfs_quota_us"))
	if err != nil {
		return nil, err
	}
	if quota > 0 { // -1: no quota
		spec.CPUQuotaMicros = uint64(quota)
	}
	return thr, nil
}

func readCPUV1(dir string, detail bool) (*CPU, error) {
	usage, ok, err := readUint(filepath.Join(dir, "cpuacct.usage"))
	if err != nil || !ok {
		return nil, err
	}
	c := &CPU{UsageNanos: usage}
	if !detail {
		return c, nil
	}
	// Older kernels lack the split files; the total is what matters.
	if c.UserNanos, _, err = readUint(filepath.Join(dir, "cpuacct.usage_user")); err != nil {
		return nil, err
	}
	if c.SystemNanos, _, err = readUint(filepath.Join(dir, "cpuacct.usage_sys")); err != nil {
		return nil, err
	}
	return c, nil
}

// readIOV1 sums blkio's throttle counters (kept whatever the I/O
// scheduler) over every device:
//
//	8:0 Read 4096
//	8:0 Write 0
//	Total 4096
func readIOV1(dir string, detail bool) (*IO, error) {
	bytesFile, err := readFile(filepath.Join(dir, "blkio.throttle.io_service_bytes_recursive"))
	if err != nil || bytesFile == nil {
		return nil, err
	}
	io := &IO{}
	sumBlkio(bytesFile, &io.ReadBytes, &io.WriteBytes)
	if detail {
		io.Devices = blkioDevices(bytesFile)
		ops, err := readFile(filepath.Join(dir, "blkio.throttle.io_serviced_recursive"))
		if err != nil {
			return nil, err
		}
		sumBlkio(ops, &io.Reads, &io.Writes)
	}
	return io, nil
}

func sumBlkio(b []byte, read, write *uint64) {
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		f := bytes.Fields(line)
		if len(f) != 3 {
			continue // "Total n", or blank
		}
		n, err := strconv.ParseUint(string(f[2]), 10, 64)
		if err != nil {
			continue
		}
		switch string(f[1]) {
		case "Read":
			*read += n
		case "Write":
			*write += n
		}
	}
}

// blkioDevices is the Read and Write bytes of each device in a blkio
// file, in the order the devices first appear.
func blkioDevices(b []byte) []DeviceIO {
	var out []DeviceIO
	at := map[[2]uint32]int{}
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		f := bytes.Fields(line)
		if len(f) != 3 {
			continue
		}
		major, minor, ok := parseDevice(f[0])
		n, err := strconv.ParseUint(string(f[2]), 10, 64)
		if !ok || err != nil {
			continue
		}
		key := [2]uint32{major, minor}
		i, seen := at[key]
		if !seen {
			i = len(out)
			at[key] = i
			out = append(out, DeviceIO{Major: major, Minor: minor})
		}
		switch string(f[1]) {
		case "Read":
			out[i].ReadBytes += n
		case "Write":
			out[i].WriteBytes += n
		}
	}
	return out
}

func readPids(dir string) (*Pids, error) {
	cur, ok, err := readUint(filepath.Join(dir, "pids.current"))
	if err != nil || !ok {
		return nil, err
	}
	limit, _, err := readUint(filepath.Join(dir, "pids.max"))
	if err != nil {
		return nil, err
	}
	return &Pids{Current: cur, Limit: limit}, nil
}

// addPressure reads the cpu, memory and io pressure files of the cgroup2
// directory dir into s, where dir exists and has them.
func (r *Reader) addPressure(s *Sample, dir string) error {
	cpu, err := readPSI(filepath.Join(dir, "cpu.pressure"))
	if err != nil {
		return err
	}
	mem, err := readPSI(filepath.Join(dir, "memory.pressure"))
	if err != nil {
		return err
	}
	io, err := readPSI(filepath.Join(dir, "io.pressure"))
	if err != nil {
		return err
	}
	if cpu != nil && s.CPU != nil {
		s.CPU.PSI = cpu
	}
	if mem != nil && s.Memory != nil {
		s.Memory.PSI = mem
	}
	if io != nil {
		if s.IO == nil {
			s.IO = &IO{}
		}
		s.IO.PSI = io
	}
	return nil
}
