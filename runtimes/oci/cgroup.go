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

// v1Mounts maps each cgroup v1 controller to its mount point.
func v1Mounts() (map[string]string, error) {
	f, err := os.Open(mountInfo)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mounts := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		preFields, postFields := strings.Fields(pre), strings.Fields(post)
		if len(preFields) < 5 || len(postFields) < 3 || postFields[0] != "cgroup" {
			continue
		}
		for _, opt := range strings.Split(postFields[2], ",") {
			mounts[opt] = preFields[4]
		}
	}
	return mounts, sc.Err()
}
