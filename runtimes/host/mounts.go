package host

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mounts is what crisp needs of the mount table.
type Mounts struct {
	At       map[string]bool // every mount point
	Overlays []string        // overlay mount points
	// Cgroups are the cgroup (v1 and v2) mount points, one per
	// hierarchy: a hierarchy mounted twice is walked once.
	Cgroups []string
	// V1 maps each cgroup v1 controller to its hierarchy's mount point
	// (and the hierarchy's other mount options, harmlessly).
	V1 map[string]string
	// V2 are the cgroup2 mount points.
	V2 []string
	// Unified is the cgroup2 mount point when the host is unified (cgroup
	// v2 only): cgroup2 is what /sys/fs/cgroup shows, which is how runc
	// decides too. "" on a v1 or hybrid host. Tests set it to a fake
	// tree.
	Unified string
}

// unifiedRoot is where a unified (cgroup v2 only) host mounts cgroup2.
const unifiedRoot = "/sys/fs/cgroup"

// mountInfo is the mount table ReadMounts reads.
const mountInfo = "/proc/self/mountinfo"

// ReadMounts reads this process's mount table.
func ReadMounts() (Mounts, error) {
	f, err := os.Open(mountInfo)
	if err != nil {
		return Mounts{}, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	return parseMounts(f)
}

// parseMounts parses mountinfo lines:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// Cgroup mounts hidden by a later mount on or above their mount point are
// left out of Cgroups, V1 and V2: mounting cgroup2 on /sys/fs/cgroup of a
// v1 host (as a private mount namespace may) hides the v1 hierarchies
// under it, which the table still lists, and runc then sees a unified
// host. The table lists mounts in the order they were made.
func parseMounts(r io.Reader) (Mounts, error) {
	m := Mounts{At: map[string]bool{}, V1: map[string]string{}}
	type cgroupMount struct {
		point, fsType, device, opts string
		at                          int // index among all mounts
	}
	var cgroups []cgroupMount
	var points []string // every mount point, in table order
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if !ok || len(pf) < 5 || len(sf) < 1 {
			continue
		}
		point := unescape(pf[4])
		m.At[point] = true
		points = append(points, point)
		switch sf[0] {
		case "overlay":
			m.Overlays = append(m.Overlays, point)
		case "cgroup", "cgroup2":
			c := cgroupMount{point: point, fsType: sf[0], device: pf[2], at: len(points) - 1}
			if len(sf) >= 3 {
				c.opts = sf[2]
			}
			cgroups = append(cgroups, c)
		}
	}
	if err := sc.Err(); err != nil {
		return Mounts{}, fmt.Errorf("read mount table: %w", err)
	}
	devices := map[string]bool{}
	for _, c := range cgroups {
		if hidden(c.point, points[c.at+1:]) {
			continue
		}
		if c.fsType == "cgroup2" {
			m.V2 = append(m.V2, c.point)
			if c.point == unifiedRoot {
				m.Unified = c.point
			}
		} else {
			for _, opt := range strings.Split(c.opts, ",") {
				if _, seen := m.V1[opt]; !seen {
					m.V1[opt] = c.point
				}
			}
		}
		if !devices[c.device] {
			devices[c.device] = true
			m.Cgroups = append(m.Cgroups, c.point)
		}
	}
	return m, nil
}

// hidden reports whether one of the later mount points is point or above
// it.
func hidden(point string, later []string) bool {
	for _, p := range later {
		if p == point || p == "/" || strings.HasPrefix(point, p+"/") {
			return true
		}
	}
	return false
}

// unescape undoes mountinfo's octal escapes (\040 for a space, ...).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Unmount detaches the mount at path. Nothing mounted there, or no path,
// is no error.
func Unmount(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	return nil
}
