package oci

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	runc "github.com/containerd/go-runc"

	"github.com/crisp-cri/crisp/runtimes/layout"
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
func (r *Runtime) monitorProc(c CreateOpts, files layout.Container) (monitorProc, error) {
	if len(r.h.Monitor) == 0 {
		return monitorProc{}, fmt.Errorf("handler %s has no monitor for gVisor sub-containers (Handler.Monitor): %w",
			r.h.Name, ErrUnsupported)
	}
	if c.Terminal {
		return monitorProc{}, fmt.Errorf("a gVisor sub-container cannot have a terminal: %w", ErrUnsupported)
	}
	if n := len(files.MonitorSocket()); n > sockPathMax {
		return monitorProc{}, fmt.Errorf("bundle path %s too long for the monitor socket (%d > %d bytes)", files.Bundle, n, sockPathMax)
	}
	a := MonitorArgs{ID: c.ID, RunDir: r.files.RunDir(), Runtime: r.h.Path, RuntimeRoot: r.h.Root,
		RuntimeArgs: r.runtimeArgs(), LogPath: c.LogPath, Stdin: c.Stdin, StdinOnce: c.StdinOnce}
	return monitorProc{
		name:    "monitor",
		path:    r.h.Monitor[0],
		args:    append(append([]string(nil), r.h.Monitor[1:]...), a.argv()...),
		logFile: files.MonitorLog(),
		pidFile: files.MonitorPidFile(),
		isAlive: func(pid int) bool { return isMonitorOf(pid, c.ID) },
	}, nil
}

// isMonitorOf reports whether pid is a live monitor of container id.
func isMonitorOf(pid int, id string) bool {
	cmdline, ok := procAlive(pid)
	return ok && strings.Contains(cmdline, "\x00--id="+id+"\x00")
}

// monitorPid returns the pid of the container's live crisp monitor, from
// its pid file, and whether there is one.
func monitorPid(files layout.Container) (int, bool) {
	pid, err := readPidFile(files.MonitorPidFile())
	if err != nil || !isMonitorOf(pid, files.ID) {
		return 0, false
	}
	return pid, true
}

// startMonitored asks the monitor of a sub-container to start
// it and waits, until ctx ends, for the answer. Once asked, the monitor
// carries on even if ctx ends. A monitor that has gone away yields an
// error wrapping ErrNotRunning; runsc's refusal is translated as for any
// runtime command.
func startMonitored(ctx context.Context, files layout.Container) error {
	sock := files.MonitorSocket()
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
		return fmt.Errorf("monitor of %s: %v: %w", files.ID, err, ErrNotRunning)
	case rep.Status != 0:
		return translate(&runc.ExitError{Status: rep.Status}, rep.Message)
	}
	return nil
}
