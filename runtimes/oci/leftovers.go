package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/crisp-cri/crisp/runtimes/layout"
)

// KillMonitor kills what still runs of a container's monitor (conmon, or
// crisp's own), found by the pid file it left in the bundle; a monitor
// that is gone, or a pid that is now someone else's, is left alone. It is
// for containers whose monitor nobody waits for: orphans, and those
// stopped before they started.
func KillMonitor(files layout.Container) error {
	if pid, err := readPidFile(files.ConmonPidFile()); err == nil && isConmon(pid) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill conmon of %s: %w", files.ID, err)
		}
	}
	if pid, ok := monitorPid(files); ok {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill monitor of %s: %w", files.ID, err)
		}
	}
	return nil
}

// RemoveLeftovers removes what a container leaves on the node besides the
// runtime's state and its rootfs: it kills its monitor if one still runs,
// then removes the monitor's cgroup (MonitorCgroup), its bundle and exit
// file. Both the CRI server's remove and the reconciler's clean-up end
// here. A monitor cgroup still busy after a short wait is an error, and
// the bundle is kept for the retry to find it.
func RemoveLeftovers(files layout.Container) error {
	if err := layout.CheckID(files.ID); err != nil {
		return fmt.Errorf("remove leftovers: %w", err)
	}
	if err := KillMonitor(files); err != nil {
		return err
	}
	if err := removeMonitorCgroup(files); err != nil {
		return fmt.Errorf("remove leftovers of %s: %w", files.ID, err)
	}
	return files.RemoveFiles()
}

// ExitCodes reads every complete exit file in the exit dir (conmon's and
// crisp's monitor's --exit-dir), by container id. Files still being
// written, and names that are no container id, are skipped; a missing dir
// holds none.
func ExitCodes(files layout.Layout) (map[string]int32, error) {
	entries, err := os.ReadDir(files.Exits())
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]int32{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list exit files: %w", err)
	}
	out := make(map[string]int32, len(entries))
	for _, e := range entries {
		if !e.Type().IsRegular() || !isExitFileName(e.Name()) {
			continue
		}
		code, _, ok, err := ReadExit(files.Container(e.Name()))
		if err != nil || !ok {
			continue // malformed or half-written: the monitor's business
		}
		out[e.Name()] = code
	}
	return out, nil
}

// MonitorAlive reports whether a container's monitor (conmon, or crisp's
// own for a runsc sub-container) still runs: while it does, it has not yet
// written the container's exit file.
func MonitorAlive(files layout.Container) bool {
	if pid, err := readPidFile(files.ConmonPidFile()); err == nil && isConmon(pid) {
		return true
	}
	_, ok := monitorPid(files)
	return ok
}
