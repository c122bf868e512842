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
	"sync"
)

// ErrNoCgroupV1 is returned by MoveToCgroup on a host that is neither
// unified (cgroup v2) nor has the cgroup v1 memory hierarchy.
var ErrNoCgroupV1 = errors.New("no cgroup v1 memory hierarchy and no unified cgroup2 mount")

// placeControllers are the cgroup v1 hierarchies crisp places its own
// processes (monitors, infra processes) in. cpuset is left out (a new
// cpuset cgroup has no cpus until someone copies them in), and so are
// freezer and devices, which must never act on a monitor.
var placeControllers = []string{"memory", "pids", "cpu", "cpuacct"}

// MoveToCgroup moves pid into the cgroup at path (a cgroupfs path like
// "/kubepods/pod1/crisp-monitor-<id>"), creating the directories, on the
// host's cgroups: Mounts.MoveToCgroup on the cgroup mounts (read once).
func MoveToCgroup(pid int, path string) error {
	m, err := cgroupMounts()
	if err != nil {
		return err
	}
	return m.MoveToCgroup(pid, path)
}

// MoveToCgroup moves pid into the cgroup at path, creating the
// directories. On a unified host that is the one cgroup2 tree, where path
// must be a leaf: cgroup v2 keeps processes out of a cgroup (other than
// the root) that has controllers enabled for its children, and the error
// then names the cgroup and its controllers rather than the kernel's
// bare EBUSY. Otherwise it is each v1 hierarchy crisp places its own
// processes in; without the v1 memory hierarchy it returns an error
// wrapping ErrNoCgroupV1.
func (m Mounts) MoveToCgroup(pid int, path string) error {
	path = filepath.Clean("/" + path)
	if m.Unified != "" {
		dir := filepath.Join(m.Unified, path)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		if path != "/" {
			if ctrls, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control")); err == nil && len(strings.TrimSpace(string(ctrls))) > 0 {
				return fmt.Errorf("move %d into cgroup %s: it has controllers enabled for its children (%s), and cgroup v2 allows processes only in leaves",
					pid, dir, strings.Join(strings.Fields(string(ctrls)), " "))
			}
		}
		return writeProcs(pid, dir)
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
		dir := filepath.Join(mnt, path)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("create cgroup %s: %w", dir, err))
			continue
		}
		errs = append(errs, writeProcs(pid, dir))
	}
	return errors.Join(errs...)
}

func writeProcs(pid int, dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("move %d into cgroup %s: %w", pid, dir, err)
	}
	return nil
}

// cgroupMounts is the cgroup part of this process's mount table, read once
// (until a read succeeds): cgroup hierarchies are mounted at boot and stay
// while crispd runs, while the whole table of a node with hundreds of
// container mounts takes the kernel milliseconds to print, and a container
// removal used to ask for it each time.
func cgroupMounts() (Mounts, error) {
	cgroupCache.mu.Lock()
	defer cgroupCache.mu.Unlock()
	if cgroupCache.ok {
		return cgroupCache.m, nil
	}
	m, err := ReadMounts()
	if err != nil {
		return Mounts{}, err
	}
	m.At, m.Overlays = nil, nil // these change; callers of the cache never need them
	cgroupCache.m, cgroupCache.ok = m, true
	return m, nil
}

var cgroupCache struct {
	mu sync.Mutex
	m  Mounts
	ok bool
}

// RemoveCgroup removes the cgroup at path on every hierarchy of the
// host's: Mounts.RemoveCgroup on the cgroup mounts (read once).
func RemoveCgroup(path string) error {
	m, err := cgroupMounts()
	if err != nil {
		return err
	}
	return m.RemoveCgroup(path)
}

// RemoveCgroup removes the cgroup at path on every hierarchy, v1 and v2.
// A cgroup that is not there is no error; one that still holds processes
// (or child cgroups) is (EBUSY), and so is every other failure, named by
// hierarchy.
func (m Mounts) RemoveCgroup(path string) error {
	var errs []error
	for _, root := range m.Cgroups {
		dir := filepath.Join(root, filepath.Clean("/"+path))
		if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// ProcessCgroup is pid's cgroup (a cgroupfs path) in the tree crisp
// places processes in: its cgroup2 ("0::") path on a unified host, else
// its v1 memory path; "" when pid is gone or has no such line.
func ProcessCgroup(pid int) string {
	m, err := cgroupMounts()
	if err != nil {
		return ""
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return ""
	}
	return cgroupOf(string(b), m.Unified != "")
}

// cgroupOf picks, out of a /proc/<pid>/cgroup file, the unified
// hierarchy's path ("0::/x") when unified is set, else the v1 memory
// hierarchy's ("4:memory:/x"). The kernel lists a process's place in every
// hierarchy it has, mounted or not, so on a unified host the v1 lines of
// a v1-capable kernel are still there: they are not where crisp put it.
func cgroupOf(procCgroup string, unified bool) string {
	for _, line := range strings.Split(procCgroup, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if unified && parts[0] == "0" && parts[1] == "" {
			return parts[2]
		}
		if !unified && slices.Contains(strings.Split(parts[1], ","), "memory") {
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
	m, err := cgroupMounts()
	if err != nil {
		return false
	}
	return m.HasController(name)
}

// HasController is HasController on this mount table, for a caller that
// asks about several controllers: reading the table costs milliseconds on
// a node with hundreds of container mounts.
func (m Mounts) HasController(name string) bool { return m.hasController(name, os.ReadFile) }

func (m Mounts) hasController(name string, readFile func(string) ([]byte, error)) bool {
	if m.Unified == "" {
		_, ok := m.V1[name]
		return ok
	}
	b, err := readFile(filepath.Join(m.Unified, "cgroup.controllers"))
	return err == nil && slices.Contains(strings.Fields(string(b)), name)
}
