package oci

import (
	"errors"
	"path"
	"syscall"
	"time"

	"github.com/crisp-cri/crisp/runtimes/host"
	"github.com/crisp-cri/crisp/runtimes/layout"
)

// MonitorCgroup is the cgroup Create gives container id's monitor under
// the pod's cgroup parent: a leaf of its own beside the container's, never
// the parent itself. cgroup v2 lets no process sit in a cgroup whose
// controllers are enabled for its children (the "no internal processes"
// rule), and runc enables them in the parent for the container's cgroup:
// a monitor in the parent would make that fail, or fail to join once a
// sibling container has done it. One per container, named after it, so it
// goes with the container (RemoveLeftovers) and the reconciler can tell
// whose a left-over one is. v1 hosts get the same layout.
func MonitorCgroup(parent, id string) string {
	return path.Join(path.Clean("/"+parent), "crisp-monitor-"+id)
}

// monitorCgroupWait bounds how long removeMonitorCgroup waits for a
// monitor that just exited (or was just killed) to leave its cgroup.
const monitorCgroupWait = 2 * time.Second

// removeMonitorCgroup removes the cgroup the container's monitor was given,
// found beside the container's own cgroup in its config.json (the pod's
// parent holds both). None (no parent, no spec) is no error. A monitor
// killed a moment ago may still be leaving: EBUSY is retried for
// monitorCgroupWait, then returned, for the caller or the reconciler to
// retry.
func removeMonitorCgroup(files layout.Container) error {
	specPath := specCgroupsPath(files)
	if !path.IsAbs(specPath) {
		return nil
	}
	cg := MonitorCgroup(path.Dir(specPath), files.ID)
	deadline := time.Now().Add(monitorCgroupWait)
	for {
		err := host.RemoveCgroup(cg)
		if err == nil || !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
