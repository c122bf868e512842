package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// KillMonitor kills what still runs of container id's monitor (conmon, or
// crisp's own), found by the pid file it left in bundle; a monitor that is
// gone, or a pid that is now someone else's, is left alone. The reconciler
// uses it after deleting an orphan, whose monitor nobody waits for.
func KillMonitor(bundle, id string) error {
	if pid, err := readPidFile(filepath.Join(bundle, conmonPidName)); err == nil && isConmon(pid) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill conmon of %s: %w", id, err)
		}
	}
	if pid, ok := monitorPid(bundle, id); ok {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill monitor of %s: %w", id, err)
		}
	}
	return nil
}

// ExitCodes reads every complete exit file in exitDir (conmon's and crisp's
// monitor's --exit-dir), by container id. Files still being written, and
// names that are no container id, are skipped; a missing dir holds none.
func ExitCodes(exitDir string) (map[string]int32, error) {
	entries, err := os.ReadDir(exitDir)
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
		code, _, ok, err := ReadExit(exitDir, "", e.Name())
		if err != nil || !ok {
			continue // malformed or half-written: the monitor's business
		}
		out[e.Name()] = code
	}
	return out, nil
}

// MonitorAlive reports whether container id's monitor (conmon, or crisp's
// own for a runsc sub-container) still runs: while it does, it has not yet
// written the container's exit file.
func MonitorAlive(bundle, id string) bool {
	if pid, err := readPidFile(filepath.Join(bundle, conmonPidName)); err == nil && isConmon(pid) {
		return true
	}
	_, ok := monitorPid(bundle, id)
	return ok
}
