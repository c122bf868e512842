package cgstats

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// unlimitedV1 is the smallest value cgroup v1 uses for "no limit": the
// kernel reports PAGE_COUNTER_MAX rounded to pages (9223372036854771712
// with 4 KiB pages), never a real limit this large.
const unlimitedV1 = 1 << 62

// readFile reads a cgroup file; a missing one is (nil, nil): the kernel
// or the hierarchy lacks it, and the counter is left out.
//
// It opens and reads with plain system calls: an *os.File also registers
// with the runtime's poller (three more calls), and a list of 500
// containers reads a dozen files each.
func readFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer unix.Close(fd)
	b := make([]byte, 0, 512)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if n == 0 {
			return b, nil
		}
		b = b[:len(b)+n]
	}
}

// readUint reads a file holding one number, or "max" (v2's no limit,
// reported as 0). ok is false when the file is missing.
func readUint(path string) (v uint64, ok bool, err error) {
	b, err := readFile(path)
	if err != nil || b == nil {
		return 0, false, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, true, nil
	}
	v, err = strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("parse %s: %w", path, err)
	}
	return v, true, nil
}

// eachKeyValue calls f for every "key value" line of a flat-keyed file
// (memory.stat, cpu.stat, memory.events). Lines that do not parse are
// skipped: newer kernels add keys, never change the format of old ones.
func eachKeyValue(b []byte, f func(key string, v uint64)) {
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		k, v, ok := bytes.Cut(line, []byte{' '})
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
		if err != nil {
			continue
		}
		f(string(k), n)
	}
}

// readPSI reads a *.pressure file:
//
//	some avg10=0.00 avg60=0.00 avg300=0.00 total=0
//	full avg10=0.00 avg60=0.00 avg300=0.00 total=0
//
// It returns nil when the file is missing or empty (no PSI here).
func readPSI(path string) (*PSI, error) {
	b, err := readFile(path)
	if err != nil || len(b) == 0 {
		return nil, err
	}
	p := &PSI{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		var d *PSIData
		switch fields[0] {
		case "some":
			d = &p.Some
		case "full":
			d = &p.Full
		default:
			continue
		}
		for _, kv := range fields[1:] {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "avg10", "avg60", "avg300":
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return nil, fmt.Errorf("parse %s: %q: %w", path, kv, err)
				}
				switch k {
				case "avg10":
					d.Avg10 = f
				case "avg60":
					d.Avg60 = f
				default:
					d.Avg300 = f
				}
			case "total":
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("parse %s: %q: %w", path, kv, err)
				}
				d.TotalMicros = n
			}
		}
	}
	return p, nil
}

// workingSet is usage less inactive file pages, floored at 0, as cAdvisor
// counts it.
func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile >= usage {
		return 0
	}
	return usage - inactiveFile
}

// readInt reads a file holding one signed number (cpu.cfs_quota_us is -1
// without a quota); a missing file reads as 0.
func readInt(path string) (int64, error) {
	b, err := readFile(path)
	if err != nil || b == nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return v, nil
}

// parseDevice parses a "major:minor" device number.
func parseDevice(b []byte) (major, minor uint32, ok bool) {
	ma, mi, found := bytes.Cut(b, []byte{':'})
	if !found {
		return 0, 0, false
	}
	x, err1 := strconv.ParseUint(string(ma), 10, 32)
	y, err2 := strconv.ParseUint(string(mi), 10, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return uint32(x), uint32(y), true
}
