package host

import (
	"io/fs"
	"reflect"
	"strings"
	"testing"
)

func TestParseMounts(t *testing.T) {
	table := strings.Join([]string{
		`22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw`,
		`30 22 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory`,
		`31 22 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct`,
		`32 22 0:27 / /mnt/again rw - cgroup cgroup rw,cpu,cpuacct`, // the same hierarchy again
		`33 22 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw`,
		`40 22 0:50 / /var/lib/crisp/overlay/abc/merged rw - overlay overlay rw,lowerdir=/x`,
		`41 22 0:51 / /run/with\040space rw - tmpfs tmpfs rw`,
		`42 22 0:52 / /run/back\134slash rw - tmpfs tmpfs rw`,
		`malformed line`,
	}, "\n")
	m, err := parseMounts(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/", "/run/with space", `/run/back\slash`, "/mnt/again"} {
		if !m.At[p] {
			t.Errorf("At[%q] = false", p)
		}
	}
	if want := []string{"/var/lib/crisp/overlay/abc/merged"}; !reflect.DeepEqual(m.Overlays, want) {
		t.Errorf("Overlays = %q, want %q", m.Overlays, want)
	}
	if want := []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/unified"}; !reflect.DeepEqual(m.Cgroups, want) {
		t.Errorf("Cgroups = %q, want %q (one per hierarchy)", m.Cgroups, want)
	}
	if m.V1["memory"] != "/sys/fs/cgroup/memory" || m.V1["cpuacct"] != "/sys/fs/cgroup/cpu,cpuacct" {
		t.Errorf("V1 = %v", m.V1)
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`: "/a b", `/tab\011`: "/tab\t", `/plain`: "/plain", `/short\04`: `/short\04`, `/bad\09x`: `/bad\09x`,
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadMountsSeesRoot(t *testing.T) {
	m, err := ReadMounts()
	if err != nil {
		t.Fatal(err)
	}
	if !m.At["/"] {
		t.Error("the root is not a mount point in this process's table")
	}
}

func TestHasController(t *testing.T) {
	read := func(controllers string) func(string) ([]byte, error) {
		return func(p string) ([]byte, error) {
			if p == "/sys/fs/cgroup/cgroup.controllers" {
				return []byte(controllers), nil
			}
			return nil, fs.ErrNotExist
		}
	}
	// This machine's shape: v1 hierarchies, and a cgroup2 mount whose
	// cgroup.controllers lists what no v1 hierarchy took (hugetlb here),
	// which runc does not use.
	hybrid, err := parseMounts(strings.NewReader(strings.Join([]string{
		`30 22 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory`,
		`33 22 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw`,
	}, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	unified, err := parseMounts(strings.NewReader(`25 22 0:28 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		m     Mounts
		ctrls string
		want  map[string]bool
	}{
		{"hybrid", hybrid, "hugetlb\n", map[string]bool{"memory": true, "hugetlb": false, "pids": false}},
		{"unified", unified, "cpu io memory pids\n", map[string]bool{"memory": true, "io": true, "hugetlb": false}},
		{"unified with hugetlb", unified, "cpu hugetlb\n", map[string]bool{"hugetlb": true, "memory": false}},
	} {
		for ctrl, want := range tc.want {
			if got := tc.m.hasController(ctrl, read(tc.ctrls)); got != want {
				t.Errorf("%s: hasController(%s) = %v, want %v", tc.name, ctrl, got, want)
			}
		}
	}
}
