package oci

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// conmonControllers are the cgroup v1 hierarchies conmon is moved into.
// cpuset is left out (a new cpuset cgroup has no cpus until someone copies
// them in), and so are freezer and devices, which must never act on the
// monitor.
var conmonControllers = []string{"memory", "pids", "cpu", "cpuacct"}

const mountInfo = "/proc/self/mountinfo"

// moveToCgroup moves pid into cgroup path parent on each of
// conmonControllers, creating the directories. It needs cgroup v1: on a
// host without the v1 memory hierarchy it returns an error wrapping
// ErrUnsupported.
func moveToCgroup(pid int, parent string) error {
	mounts, err := v1Mounts()
	if err != nil {
		return err
	}
	if _, ok := mounts["memory"]; !ok {
		return fmt.Errorf("no cgroup v1 memory hierarchy: %w", ErrUnsupported)
	}
	var errs []error
	for _, ctrl := range conmonControllers {
		mnt, ok := mounts[ctrl]
		if !ok {
			continue
		}
		dir := filepath.Join(mnt, filepath.Clean("/"+parent))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeCgroup removes the empty cgroup at path on every hierarchy,
// v1 and v2, and ignores what cannot be removed.
func removeCgroup(path string) {
	_, all, err := cgroupMounts()
	if err != nil {
		return
	}
	for _, mnt := range all {
		_ = os.Remove(filepath.Join(mnt, filepath.Clean("/"+path)))
	}
}

// v1Mounts maps each cgroup v1 controller to its mount point.
func v1Mounts() (map[string]string, error) {
	v1, _, err := cgroupMounts()
	return v1, err
}

// cgroupMounts returns the v1 controllers' mount points by controller, and
// every cgroup mount point, v1 or v2.
func cgroupMounts() (v1 map[string]string, all []string, err error) {
	f, err := os.Open(mountInfo)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	v1 = make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		preFields, postFields := strings.Fields(pre), strings.Fields(post)
		if len(preFields) < 5 || len(postFields) < 3 {
			continue
		}
		switch postFields[0] {
		case "cgroup":
			for _, opt := range strings.Split(postFields[2], ",") {
				v1[opt] = preFields[4]
			}
		case "cgroup2": // no controllers to map, but a place to clean
		default:
			continue
		}
		all = append(all, preFields[4])
	}
	return v1, all, sc.Err()
}

// MoveToCgroup moves pid into the cgroup at path on the v1 hierarchies
// crisp places its own processes in (see conmonControllers).
func MoveToCgroup(pid int, path string) error { return moveToCgroup(pid, path) }

// RemoveCgroup removes the empty cgroup at path on every hierarchy.
func RemoveCgroup(path string) { removeCgroup(path) }
