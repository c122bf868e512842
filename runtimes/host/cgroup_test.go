package host

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// What /proc/self/mountinfo shows in a private mount namespace of this
// hybrid host after `mount -t cgroup2 none /sys/fs/cgroup`: the v1
// hierarchies and the hybrid cgroup2 mount are still listed, hidden under
// the new cgroup2 mount, which shares the hybrid one's device.
const privateCgroup2Table = `50 49 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
51 50 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
57 50 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
61 50 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
63 50 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
70 22 0:40 / /mnt/v1memory rw,relatime - cgroup cgroup rw,memory
73 50 0:37 / /sys/fs/cgroup rw,relatime - cgroup2 none rw`

func TestParseMountsUnified(t *testing.T) {
	for _, tc := range []struct {
		name        string
		table       string
		unified     string
		v1memory    string
		cgroups, v2 []string
	}{
		{"hybrid", strings.Join([]string{
			`30 22 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755`,
			`34 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory`,
			`40 30 0:37 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw`,
		}, "\n"), "", "/sys/fs/cgroup/memory", []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified"}, []string{"/sys/fs/cgroup/unified"}},
		{"unified", `25 22 0:28 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate`, "/sys/fs/cgroup", "",
			[]string{"/sys/fs/cgroup"}, []string{"/sys/fs/cgroup"}},
		// A v1 hierarchy mounted elsewhere stays; the hidden ones go, and
		// the shared cgroup2 device is listed once, at the visible point.
		{"private cgroup2 over a hybrid host", privateCgroup2Table, "/sys/fs/cgroup", "/mnt/v1memory",
			[]string{"/mnt/v1memory", "/sys/fs/cgroup"}, []string{"/sys/fs/cgroup"}},
		{"cgroup2 elsewhere", `25 22 0:28 / /mnt/cg2 rw - cgroup2 cgroup2 rw`, "", "", []string{"/mnt/cg2"}, []string{"/mnt/cg2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseMounts(strings.NewReader(tc.table))
			if err != nil {
				t.Fatal(err)
			}
			if m.Unified != tc.unified {
				t.Errorf("Unified = %q, want %q", m.Unified, tc.unified)
			}
			if m.V1["memory"] != tc.v1memory {
				t.Errorf("V1[memory] = %q, want %q", m.V1["memory"], tc.v1memory)
			}
			if !reflect.DeepEqual(m.Cgroups, tc.cgroups) {
				t.Errorf("Cgroups = %q, want %q", m.Cgroups, tc.cgroups)
			}
			if !reflect.DeepEqual(m.V2, tc.v2) {
				t.Errorf("V2 = %q, want %q", m.V2, tc.v2)
			}
		})
	}
	// Hidden or not, a mount point is still one.
	m, _ := parseMounts(strings.NewReader(privateCgroup2Table))
	if !m.At["/sys/fs/cgroup/memory"] {
		t.Error("At[/sys/fs/cgroup/memory] = false for a hidden mount")
	}
}

// fakeCgroup2 is a unified host's cgroup2 tree in a temp dir: the root's
// control files, and a pod cgroup whose controllers are enabled for its
// children (kubelet's and runc's doing).
func fakeCgroup2(t *testing.T) (Mounts, string) {
	t.Helper()
	root := t.TempDir()
	for name, content := range map[string]string{
		"cgroup.controllers":                             "cpu io memory pids\n",
		"cgroup.subtree_control":                         "cpu io memory pids\n",
		"cgroup.procs":                                   "1\n",
		"kubepods/pod1/cgroup.controllers":               "cpu io memory pids\n",
		"kubepods/pod1/cgroup.subtree_control":           "cpu memory\n",
		"kubepods/pod1/cgroup.procs":                     "",
		"kubepods/pod1/crisp-abc/cgroup.procs":           "",
		"kubepods/pod1/crisp-abc/cgroup.subtree_control": "",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Mounts{Unified: root, V2: []string{root}, Cgroups: []string{root}, V1: map[string]string{}}, root
}

func TestMoveToCgroupV2(t *testing.T) {
	m, root := fakeCgroup2(t)
	for _, tc := range []struct {
		name, path string
		wantErr    string // "" = placed
	}{
		{"new leaf under the pod", "/kubepods/pod1/crisp-monitor-abc", ""},
		{"existing leaf", "/kubepods/pod1/crisp-abc", ""},
		{"new path, no slash", "crisp/xyz", ""},
		{"the root, which may hold processes", "/", ""},
		{"pod cgroup with controllers enabled below", "/kubepods/pod1", "controllers enabled for its children (cpu memory)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := m.MoveToCgroup(4242, tc.path)
			procs := filepath.Join(root, tc.path, "cgroup.procs")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), filepath.Join(root, tc.path)) {
					t.Errorf("MoveToCgroup(%s) = %v, want an error naming the cgroup and %q", tc.path, err, tc.wantErr)
				}
				if b, _ := os.ReadFile(procs); strings.Contains(string(b), "4242") {
					t.Errorf("%s = %q after a refused move", procs, b)
				}
				return
			}
			if err != nil {
				t.Fatalf("MoveToCgroup(%s) = %v", tc.path, err)
			}
			if b, err := os.ReadFile(procs); err != nil || string(b) != "4242" {
				t.Errorf("%s = %q, %v; want 4242", procs, b, err)
			}
		})
	}
}

func TestMoveToCgroupV1(t *testing.T) {
	root := t.TempDir()
	v1 := map[string]string{}
	for _, ctrl := range []string{"memory", "pids", "cpu", "cpuacct", "cpuset", "freezer"} {
		v1[ctrl] = filepath.Join(root, ctrl)
	}
	m := Mounts{V1: v1}
	if err := m.MoveToCgroup(77, "/kubepods/pod1/crisp-monitor-abc"); err != nil {
		t.Fatal(err)
	}
	for ctrl, want := range map[string]bool{"memory": true, "pids": true, "cpu": true, "cpuacct": true, "cpuset": false, "freezer": false} {
		b, err := os.ReadFile(filepath.Join(v1[ctrl], "kubepods/pod1/crisp-monitor-abc/cgroup.procs"))
		if got := err == nil && string(b) == "77"; got != want {
			t.Errorf("%s: pid placed = %v (%q, %v), want %v", ctrl, got, b, err, want)
		}
	}
	delete(v1, "memory")
	if err := m.MoveToCgroup(77, "/x"); !errors.Is(err, ErrNoCgroupV1) {
		t.Errorf("MoveToCgroup() without a memory hierarchy = %v, want ErrNoCgroupV1", err)
	}
}

func TestRemoveCgroupV2(t *testing.T) {
	root := t.TempDir()
	m := Mounts{Unified: root, V2: []string{root}, Cgroups: []string{root}}
	// A fake tree's dirs hold no control files: the kernel's rmdir of a
	// cgroup ignores them, os.Remove of a plain dir would not.
	for _, d := range []string{"kubepods/pod1/crisp-abc", "kubepods/pod1/crisp-busy/child"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.RemoveCgroup("/kubepods/pod1/crisp-abc"); err != nil {
		t.Errorf("RemoveCgroup(empty) = %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "kubepods/pod1/crisp-abc")); !os.IsNotExist(err) {
		t.Errorf("the cgroup is still there: %v", err)
	}
	if err := m.RemoveCgroup("/kubepods/pod1/crisp-gone"); err != nil {
		t.Errorf("RemoveCgroup(missing) = %v, want nil", err)
	}
	if err := m.RemoveCgroup("/kubepods/pod1/crisp-busy"); err == nil || !strings.Contains(err.Error(), "crisp-busy") {
		t.Errorf("RemoveCgroup(with a child) = %v, want an error naming it", err)
	}
}

func TestCgroupOf(t *testing.T) {
	hybrid := "9:name=systemd:/\n4:memory:/kubepods/pod1/crisp-abc\n1:cpu,cpuacct:/kubepods\n0::/kubepods/pod1/crisp-abc-unified\n"
	for _, tc := range []struct {
		name, file string
		unified    bool
		want       string
	}{
		{"v1 memory line", hybrid, false, "/kubepods/pod1/crisp-abc"},
		{"unified on a v1-capable kernel: the 0:: line", hybrid, true, "/kubepods/pod1/crisp-abc-unified"},
		{"unified only", "0::/x\n", true, "/x"},
		{"unified only, asked for v1", "0::/x\n", false, ""},
		{"v1 without memory", "1:cpu:/x\n", false, ""},
		{"empty", "", true, ""},
	} {
		if got := cgroupOf(tc.file, tc.unified); got != tc.want {
			t.Errorf("%s: cgroupOf(unified=%v) = %q, want %q", tc.name, tc.unified, got, tc.want)
		}
	}
}

// HasController on a fake unified tree reads its cgroup.controllers.
func TestHasControllerFakeTree(t *testing.T) {
	m, _ := fakeCgroup2(t)
	for ctrl, want := range map[string]bool{"memory": true, "pids": true, "hugetlb": false} {
		if got := m.hasController(ctrl, os.ReadFile); got != want {
			t.Errorf("hasController(%s) = %v, want %v", ctrl, got, want)
		}
	}
}
