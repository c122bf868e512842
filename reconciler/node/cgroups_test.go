package node

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/crisp-cri/crisp/reconciler"
	"github.com/crisp-cri/crisp/runtimes/host"
)

// The walk on a unified host's cgroup2 tree (a fake one) finds the
// containers' and monitors' cgroups, each once, and nothing else; a
// removal takes only what it was given.
func TestContainerCgroupsUnified(t *testing.T) {
	root := t.TempDir()
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	for _, d := range []string{
		"crisp/" + a,
		"kubepods/besteffort/pod1/crisp-" + b,
		"kubepods/besteffort/pod1/crisp-monitor-" + b,
		"kubepods/besteffort/pod1/crisp-monitors", // no id: not crisp's
		"kubepods/besteffort/pod1/" + b,           // runc's own naming, not crisp's
		"system.slice/crisp.service",
	} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m := host.Mounts{Unified: root, V2: []string{root}, Cgroups: []string{root}}
	got := containerCgroups(m)
	sort.Slice(got, func(i, j int) bool { return got[i].Path < got[j].Path })
	want := []reconciler.Resource{
		{Object: reconciler.ObjCgroup, Owner: a, Path: "/crisp/" + a},
		{Object: reconciler.ObjCgroup, Owner: b, Path: "/kubepods/besteffort/pod1/crisp-" + b},
		{Object: reconciler.ObjCgroup, Owner: b, Path: "/kubepods/besteffort/pod1/crisp-monitor-" + b},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("containerCgroups() = %+v\nwant %+v", got, want)
	}

	if err := removeCgroup(m, want[2].Path); err != nil {
		t.Fatalf("removeCgroup(%s) = %v", want[2].Path, err)
	}
	if _, err := os.Stat(filepath.Join(root, want[2].Path)); !os.IsNotExist(err) {
		t.Errorf("%s still there after removeCgroup: %v", want[2].Path, err)
	}
	if _, err := os.Stat(filepath.Join(root, want[1].Path)); err != nil {
		t.Errorf("the container's cgroup went with its monitor's: %v", err)
	}
	if err := removeCgroup(m, "/system.slice/crisp.service"); err == nil {
		t.Error("removeCgroup() of a cgroup not crisp's succeeded")
	}
	if _, err := os.Stat(filepath.Join(root, "system.slice/crisp.service")); err != nil {
		t.Errorf("a cgroup not crisp's was removed: %v", err)
	}
}

// A hybrid host's runc makes a container's cgroup in the v1 hierarchies
// and in the cgroup2 one: listed once.
func TestContainerCgroupsHybridOnce(t *testing.T) {
	root := t.TempDir()
	id := strings.Repeat("c", 64)
	var roots []string
	for _, h := range []string{"memory", "pids", "unified"} {
		roots = append(roots, filepath.Join(root, h))
		if err := os.MkdirAll(filepath.Join(root, h, "kubepods/pod1/crisp-"+id), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got := containerCgroups(host.Mounts{Cgroups: roots, V2: roots[2:], V1: map[string]string{"memory": roots[0], "pids": roots[1]}})
	if len(got) != 1 || got[0].Path != "/kubepods/pod1/crisp-"+id || got[0].Owner != id {
		t.Errorf("containerCgroups() = %+v, want the one cgroup once", got)
	}
}
