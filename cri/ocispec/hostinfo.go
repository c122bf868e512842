package ocispec

// The helpers here read the node. ForContainer never calls them except as
// the defaults of ContainerInput.StatDevice; callers use them to fill in
// HostDevices and HostCapabilities.

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DeviceFromPath describes the device node at p (following symlinks).
// A missing path yields an error matching fs.ErrNotExist; a path that is
// not a character or block device wraps ErrInvalid.
func DeviceFromPath(p string) (specs.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return specs.LinuxDevice{}, &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, fmt.Errorf("%s is not a device node: %w", p, ErrInvalid)
	}
	rdev := uint64(st.Rdev) // Rdev is uint32 on some architectures
	return specs.LinuxDevice{
		Path:     p,
		Type:     typ,
		Major:    int64(unix.Major(rdev)),
		Minor:    int64(unix.Minor(rdev)),
		FileMode: ptr(fs.FileMode(st.Mode & 0o777)),
		UID:      ptr(st.Uid),
		GID:      ptr(st.Gid),
	}, nil
}

// HostDevices lists the device nodes under /dev for privileged
// containers, skipping the filesystems and nodes a container gets its own
// of (pts, shm, mqueue, console) and symlinks.
func HostDevices() ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	err := filepath.WalkDir("/dev", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			switch d.Name() {
			case "pts", "shm", "mqueue", "fd", ".lxc", ".udev":
				return fs.SkipDir
			}
			return nil
		case d.Type()&fs.ModeSymlink != 0, d.Name() == "console":
			return nil
		case d.Type()&fs.ModeDevice == 0:
			return nil
		}
		dev, err := DeviceFromPath(p)
		if err != nil {
			return nil // gone or changed since the walk read it
		}
		out = append(out, dev)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list host devices: %w", err)
	}
	return out, nil
}

// CurrentCapabilities returns the names of the capabilities in this
// process's effective set (/proc/self/status CapEff), in number order.
// Privileged containers can get no more than these: on a node whose root
// lacks one (CAP_SYS_RESOURCE here), asking runc for it fails the start.
func CurrentCapabilities() ([]string, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		hex, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("parse CapEff %q: %w", hex, err)
		}
		return capsOfMask(mask), nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("no CapEff in /proc/self/status")
}

// capsOfMask names the bits of a capability mask that ocispec knows.
func capsOfMask(mask uint64) []string {
	out := []string{}
	for i, n := range allCaps {
		if mask&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// HasCgroupNamespace reports whether the kernel has cgroup namespaces.
func HasCgroupNamespace() bool {
	_, err := os.Stat("/proc/self/ns/cgroup")
	return err == nil
}
