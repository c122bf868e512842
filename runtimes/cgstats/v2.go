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
		s.IO, err = readIOV2(dir)
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
	eachKeyValue(b, func(k string, v uint64) {
		switch k {
		case "usage_usec":
			c.UsageNanos, found = v*1000, true
		case "user_usec":
			c.UserNanos = v * 1000
		case "system_usec":
			c.SystemNanos = v * 1000
		}
	})
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
			if k == "max" {
				m.Failcnt = v
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
func readIOV2(dir string) (*IO, error) {
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
			case "wbytes":
				io.WriteBytes += n
			case "rios":
				io.Reads += n
			case "wios":
				io.Writes += n
			}
		}
	}
	return io, nil
}
