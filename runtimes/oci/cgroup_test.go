package oci

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crisp-cri/crisp/runtimes/host"
	"github.com/crisp-cri/crisp/runtimes/layout"
)

func TestMonitorCgroup(t *testing.T) {
	for _, tc := range []struct{ parent, want string }{
		{"/kubepods/pod1", "/kubepods/pod1/crisp-monitor-abc"},
		{"/kubepods/pod1/", "/kubepods/pod1/crisp-monitor-abc"},
		{"kubepods", "/kubepods/crisp-monitor-abc"},
	} {
		if got := MonitorCgroup(tc.parent, "abc"); got != tc.want {
			t.Errorf("MonitorCgroup(%q) = %q, want %q", tc.parent, got, tc.want)
		}
	}
}

// RemoveLeftovers removes the monitor's cgroup, found beside the
// container's in its spec, on the host's real hierarchies, once the
// process in it (killed just before, as KillMonitor does) has left.
func TestRemoveLeftoversMonitorCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOrFail(t, "moving a process between cgroups needs root")
	}
	files := layout.New(newRunDir(t)).Container(randomID(t))
	parent := "/" + cgroupBase + "/" + files.ID + "-pod"
	t.Cleanup(func() { removeTestCgroups(t, files.ID) })
	if err := os.MkdirAll(files.Bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := files.WriteSpec(&specs.Spec{Version: specs.Version, Linux: &specs.Linux{CgroupsPath: parent + "/crisp-" + files.ID}}); err != nil {
		t.Fatal(err)
	}
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	cg := MonitorCgroup(parent, files.ID)
	if err := host.MoveToCgroup(sleep.Process.Pid, cg); err != nil {
		sleep.Process.Kill()
		sleep.Wait()
		t.Fatalf("MoveToCgroup(%s) = %v", cg, err)
	}
	if got := host.ProcessCgroup(sleep.Process.Pid); got != cg {
		t.Errorf("ProcessCgroup() = %q, want %q", got, cg)
	}
	sleep.Process.Kill()
	go sleep.Wait()
	if err := RemoveLeftovers(files); err != nil {
		t.Fatalf("RemoveLeftovers() = %v", err)
	}
	m, err := host.ReadMounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, root := range m.Cgroups {
		if _, err := os.Stat(filepath.Join(root, cg)); !os.IsNotExist(err) {
			t.Errorf("%s after RemoveLeftovers: %v, want it gone", filepath.Join(root, cg), err)
		}
	}
}
