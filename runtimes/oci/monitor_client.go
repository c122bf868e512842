package oci

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	runc "github.com/containerd/go-runc"
)

// startRequest is what startMonitored sends on the monitor's socket.
const startRequest = "start\n"

// startReply is the monitor's answer: Status is 0 once the container
// runs, else `runsc start`'s exit status (or -1) with its message.
type startReply struct {
	Status  int    `json:"status"`
	Message string `json:"message,omitempty"`
}

// monitorProc is crisp's monitor for the runsc sub-container c, which
// prepare has checked.
func (r *Runtime) monitorProc(c CreateOpts) (monitorProc, error) {
	if len(r.h.Monitor) == 0 {
		return monitorProc{}, fmt.Errorf("handler %s has no monitor for gVisor sub-containers (Handler.Monitor): %w",
			r.h.Name, ErrUnsupported)
	}
	if c.Terminal || c.Stdin {
		return monitorProc{}, fmt.Errorf("a gVisor sub-container cannot have a terminal or stdin: %w", ErrUnsupported)
	}
	if n := len(filepath.Join(c.Bundle, monitorSockName)); n > sockPathMax {
		return monitorProc{}, fmt.Errorf("bundle path %s too long for the monitor socket (%d > %d bytes)", c.Bundle, n, sockPathMax)
	}
	a := MonitorArgs{ID: c.ID, Bundle: c.Bundle, Runtime: r.h.Path, RuntimeRoot: r.h.Root,
		RuntimeArgs: r.runtimeArgs(), LogPath: c.LogPath, ExitDir: c.ExitDir, PersistDir: c.PersistDir}
	return monitorProc{
		name:    "monitor",
		path:    r.h.Monitor[0],
		args:    append(append([]string(nil), r.h.Monitor[1:]...), a.argv()...),
		logName: monitorLogName,
		pidName: monitorPidName,
		isAlive: func(pid int) bool { return isMonitorOf(pid, c.ID) },
	}, nil
}

// isMonitorOf reports whether pid is a live monitor of container id.
func isMonitorOf(pid int, id string) bool {
	cmdline, ok := procAlive(pid)
	return ok && strings.Contains(cmdline, "\x00--id="+id+"\x00")
}

// monitorPid returns the pid of the live monitor of container id, from
// <bundle>/monitor.pid, and whether there is one.
func monitorPid(bundle, id string) (int, bool) {
	pid, err := readPidFile(filepath.Join(bundle, monitorPidName))
	if err != nil || !isMonitorOf(pid, id) {
		return 0, false
	}
	return pid, true
}

// startMonitored asks the monitor of the sub-container in bundle to start
// it and waits, until ctx ends, for the answer. Once asked, the monitor
// carries on even if ctx ends. A monitor that has gone away yields an
// error wrapping ErrNotRunning; runsc's refusal is translated as for any
// runtime command.
func startMonitored(ctx context.Context, bundle string) error {
	sock := filepath.Join(bundle, monitorSockName)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("reach monitor: %w", ctx.Err())
		}
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("no monitor listens on %s: %w", sock, ErrNotRunning)
		}
		return fmt.Errorf("reach monitor: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var rep startReply
	if _, err = conn.Write([]byte(startRequest)); err == nil {
		err = json.NewDecoder(bufio.NewReader(conn)).Decode(&rep)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("wait for monitor: %w", ctx.Err())
	case err != nil:
		// The monitor died while starting the container.
		return fmt.Errorf("monitor of %s: %v: %w", bundle, err, ErrNotRunning)
	case rep.Status != 0:
		return translate(&runc.ExitError{Status: rep.Status}, rep.Message)
	}
	return nil
}
