package cgstats

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"
)

// readV2 reads the cgroup's counters from the unified hierarchy. A
// controller not enabled for the cgroup has no files: its part is nil.
// cpu.stat, which every cgroup2 directory has, tells whether the cgroup
// exists.
func (r *Reader) readV2(path string, parts Parts) (Sample, error) {
	dir := filepath.Join(r.v2, path)
	cpu, ok, err := readCPUV2(dir)
	if err != nil {
		return Sample{}, fmt.Errorf("read cgroup %s: %w", path, err)
	}
	if !ok {
		return Sample{}, fmt.Errorf("read cgroup %s: %w", path, ErrNotFound)
	}
	s := Sample{Time: time.Now()}
	if parts&PartCPU != 0 {
		s.CPU = cpu
	}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if parts&PartMemory != 0 {
		s.Memory, s.Swap, err = readMemoryV2(dir, parts&PartDetail != 0)
		add(err)
	}
	if parts&PartIO != 0 {
		s.IO, err = readIOV2(dir, parts&PartDetail != 0)
		add(err)
	}
	if parts&PartDetail != 0 {
		s.Spec, err = readSpecV2(dir)
		add(err)
	}
	if parts&PartTasks != 0 {
		s.Tasks, err = r.readTasks(dir)
		add(err)
	}
	if parts&PartPids != 0 {
		s.Pids, err = readPids(dir)
		add(err)
	}
	if parts&PartPressure != 0 {
		add(r.addPressure(&s, dir))
	}
	if err := errors.Join(errs...); err != nil {
		return Sample{}, fmt.Errorf("read cgroup %s: %w", path, err)
	}
	return s, nil
}

// readCPUV2 reads cpu.stat, which every cgroup2 directory has (the cpu
// controller only adds throttling lines); exists is false without it.
func readCPUV2(dir string) (c *CPU, exists bool, err error) {
	b, err := readFile(filepath.Join(dir, "cpu.stat"))
	if err != nil || b == nil {
		return nil, false, err
	}
	c = &CPU{}
	found := false
	var thr Throttling
	throttled := false
	eachKeyValue(b, func(k string, v uint64) {
		switch k {
		case "usage_usec":
			c.UsageNanos, found = v*1000, true
		case "user_usec":
			c.UserNanos = v * 1000
		case "system_usec":
			c.SystemNanos = v * 1000
		case "nr_periods":
			thr.Periods, throttled = v, true
		case "nr_throttled":
			thr.ThrottledPeriods = v
		case "throttled_usec":
			thr.ThrottledNanos = v * 1000
		}
	})
	if throttled {
		c.Throttling = &thr
	}
	if !found {
		return nil, true, nil
	}
	return c, true, nil
}

func readMemoryV2(dir string, detail bool) (*Memory, *Swap, error) {
	usage, ok, err := readUint(filepath.Join(dir, "memory.current"))
	if err != nil || !ok {
		return nil, nil, err
	}
	m := &Memory{Usage: usage}
	b, err := readFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return nil, nil, err
	}
	eachKeyValue(b, func(k string, v uint64) {
		switch k {
		case "inactive_file":
			m.InactiveFile = v
		case "active_file":
			m.ActiveFile = v
		case "anon":
			m.RSS = v
		case "file":
			m.Cache = v
		case "file_mapped":
			m.MappedFile = v
		case "pgfault":
			m.PageFaults = v
		case "pgmajfault":
			m.MajorFaults = v
		case "kernel": // Linux 5.18+
			m.KernelUsage = v
		}
	})
	m.WorkingSet = workingSet(m.Usage, m.InactiveFile)
	if m.Limit, _, err = readUint(filepath.Join(dir, "memory.max")); err != nil {
		return nil, nil, err
	}
	if detail {
		ev, err := readFile(filepath.Join(dir, "memory.events"))
		if err != nil {
			return nil, nil, err
		}
		eachKeyValue(ev, func(k string, v uint64) {
			switch k {
			case "max":
				m.Failcnt = v
			case "oom_kill":
				m.OOMKills = v
			}
		})
	}
	swap, ok, err := readUint(filepath.Join(dir, "memory.swap.current"))
	if err != nil || !ok {
		return m, nil, err
	}
	sw := &Swap{Usage: swap}
	if sw.Limit, _, err = readUint(filepath.Join(dir, "memory.swap.max")); err != nil {
		return nil, nil, err
	}
	return m, sw, nil
}

// readIOV2 sums io.stat over every device:
//
//	8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0
func readIOV2(dir string, detail bool) (*IO, error) {
	b, err := readFile(filepath.Join(dir, "io.stat"))
	if err != nil || b == nil {
		return nil, err
	}
	io := &IO{}
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		f := bytes.Fields(line)
		if len(f) < 2 {
			continue
		}
		var dev *DeviceIO
		if major, minor, ok := parseDevice(f[0]); ok && detail {
			io.Devices = append(io.Devices, DeviceIO{Major: major, Minor: minor})
			dev = &io.Devices[len(io.Devices)-1]
		}
		for _, kv := range f[1:] {
			k, v, ok := bytes.Cut(kv, []byte{'='})
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				continue
			}
			switch string(k) {
			case "rbytes":
				io.ReadBytes += n
				if dev != nil {
					dev.ReadBytes = n
				}
			case "wbytes":
				io.WriteBytes += n
				if dev != nil {
					dev.WriteBytes = n
				}
			case "rios":
				io.Reads += n
			case "wios":
				io.Writes += n
			}
		}
	}
	return io, nil
}

// readSpecV2 reads the cgroup's CPU limits and swap limit. cpu.max is
// "max 100000" without a quota; cpu.weight (1–10000) is reported as the
// v1 shares it stands for (runc maps shares 2–262144 onto it). Without
// the cpu controller the CPU fields stay 0.
func readSpecV2(dir string) (*Spec, error) {
	spec := &Spec{}
	weight, ok, err := readUint(filepath.Join(dir, "cpu.weight"))
	if err != nil {
		return nil, err
	}
	if ok && weight > 0 {
		spec.CPUShares = 2 + (weight-1)*262142/9999
	}
	b, err := readFile(filepath.Join(dir, "cpu.max"))
	if err != nil {
		return nil, err
	}
	if f := bytes.Fields(b); len(f) == 2 {
		if q, err := strconv.ParseUint(string(f[0]), 10, 64); err == nil { // "max": no quota
			spec.CPUQuotaMicros = q
		}
		if spec.CPUPeriodMicros, err = strconv.ParseUint(string(f[1]), 10, 64); err != nil {
			return nil, fmt.Errorf("parse %s: %q: %w", filepath.Join(dir, "cpu.max"), b, err)
		}
	}
	if spec.MemorySwapLimit, _, err = readUint(filepath.Join(dir, "memory.swap.max")); err != nil {
		return nil, err
	}
	return spec, nil
}
