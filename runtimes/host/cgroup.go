package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrNoCgroupV1 is returned by MoveToCgroup on a host without the cgroup
// v1 memory hierarchy.
var ErrNoCgroupV1 = errors.New("no cgroup v1 memory hierarchy")

// placeControllers are the cgroup v1 hierarchies crisp places its own
// processes (monitors, infra processes) in. cpuset is left out (a new
// cpuset cgroup has no cpus until someone copies them in), and so are
// freezer and devices, which must never act on a monitor.
var placeControllers = []string{"memory", "pids", "cpu", "cpuacct"}

// MoveToCgroup moves pid into the cgroup at path (a cgroupfs path like
// "/kubepods/pod1") on each of the hierarchies crisp places its own
// processes in, creating the directories. It needs cgroup v1: without the
// v1 memory hierarchy it returns an error wrapping ErrNoCgroupV1.
func MoveToCgroup(pid int, path string) error {
	m, err := ReadMounts()
	if err != nil {
		return err
	}
	if _, ok := m.V1["memory"]; !ok {
		return ErrNoCgroupV1
	}
	var errs []error
	for _, ctrl := range placeControllers {
		mnt, ok := m.V1[ctrl]
		if !ok {
			continue
		}
		dir := filepath.Join(mnt, filepath.Clean("/"+path))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("create cgroup %s: %w", dir, err))
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			errs = append(errs, fmt.Errorf("move %d into cgroup %s: %w", pid, dir, err))
		}
	}
	return errors.Join(errs...)
}

// RemoveCgroup removes the cgroup at path on every hierarchy, v1 and v2.
// A cgroup that is not there is no error; one that still holds processes
// is (EBUSY), and so is every other failure, named by hierarchy.
func RemoveCgroup(path string) error {
	m, err := ReadMounts()
	if err != nil {
		return err
	}
	var errs []error
	for _, root := range m.Cgroups {
		dir := filepath.Join(root, filepath.Clean("/"+path))
		if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// MemoryCgroup is pid's cgroup v1 memory path (where crisp placed it),
// or "".
func MemoryCgroup(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), "memory") {
			return parts[2]
		}
	}
	return ""
}

// HasController reports whether containers can be given limits of the
// cgroup controller name (hugetlb, blkio, ...). On a unified host (cgroup2
// at /sys/fs/cgroup) that is its cgroup.controllers; otherwise runtimes
// use the v1 hierarchies, so the controller's v1 hierarchy must be
// mounted: a hybrid host's cgroup2 mount may list controllers that no
// runtime uses there. A runtime asked for limits of a controller it cannot
// use fails to create the container.
func HasController(name string) bool {
	m, err := ReadMounts()
	if err != nil {
		return false
	}
	return m.hasController(name, os.ReadFile)
}

// unifiedRoot is where a unified (cgroup v2 only) host mounts cgroup2.
const unifiedRoot = "/sys/fs/cgroup"

func (m Mounts) hasController(name string, readFile func(string) ([]byte, error)) bool {
	if !slices.Contains(m.V2, unifiedRoot) {
		_, ok := m.V1[name]
		return ok
	}
	b, err := readFile(filepath.Join(unifiedRoot, "cgroup.controllers"))
	return err == nil && slices.Contains(strings.Fields(string(b)), name)
}
