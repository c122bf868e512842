package oci

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/crisp-cri/crisp/runtimes/host"
	"github.com/crisp-cri/crisp/runtimes/layout"
	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// CreateOpts describe a container for Create. ID and LogPath are
// required. The bundle, which holds the config.json the caller wrote and
// gets the monitor's files, and the exit file are where the Runtime's
// layout says; Create makes the directories they need.
type CreateOpts struct {
	ID      string
	LogPath string // CRI log file (k8s-file format), conmon -l

	Terminal  bool // the spec's process.terminal must match
	Stdin     bool // keep a stdin pipe that attach can write to
	StdinOnce bool // close the container's stdin when the first attach ends

	// CgroupParent, when set, is a cgroupfs path (like "/kubepods/pod1")
	// under which the monitor gets a cgroup of its own (MonitorCgroup),
	// made and joined before it starts the runtime: on cgroup v2, or on
	// the v1 memory, pids, cpu and cpuacct hierarchies. Failures are
	// logged, not returned. The monitor stays there until shortly after
	// the container exits; RemoveLeftovers removes that cgroup.
	CgroupParent string
}

const (
	sockPathMax    = 107              // sun_path is 108 bytes with the NUL
	cleanupTimeout = 30 * time.Second // for undoing a failed Create; runsc delete is slow
)

// Create starts conmon for the container in its bundle, whose config.json
// the caller has written; conmon runs `<runtime> create`. Create returns
// the container's init pid once conmon reports it on the sync pipe. It does
// not start the container: call Start.
//
// On a runsc handler, a sub-container of a gVisor pod (its spec's
// io.kubernetes.cri.container-type annotation is "container") gets crisp's
// own monitor instead (Handler.Monitor, see RunMonitor), because conmon
// takes it for dead at once; the pid returned is then the sandbox's, as
// runsc reports it.
//
// If the runtime rejects the container (a bad spec, a missing rootfs),
// the error carries the runtime's message. If ctx ends first, Create kills
// the monitor, force-deletes whatever the runtime made and returns an error
// wrapping ctx's error; give ctx a deadline, or a hung runtime blocks
// Create. After any failure nothing of the container is left running.
// The monitor outlives ctx and the calling process once Create has
// returned successfully. Safe for concurrent use with distinct ids.
func (r *Runtime) Create(ctx context.Context, c CreateOpts) (pid int, retErr error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("create %s: %w", c.ID, err)
	}
	if err := layout.CheckID(c.ID); err != nil {
		return 0, fmt.Errorf("create: %w", err)
	}
	files := r.files.Container(c.ID)
	if err := r.prepare(c, files); err != nil {
		return 0, fmt.Errorf("create %s: %w", c.ID, err)
	}
	log := r.log.With(slog.String(logkey.Container, c.ID))
	mon := r.conmonProc(c, files)
	if r.isRunsc() && isSubcontainer(files) {
		var err error
		if mon, err = r.monitorProc(c, files); err != nil {
			return 0, fmt.Errorf("create %s: %w", c.ID, err)
		}
	}

	syncR, syncW, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", c.ID, err)
	}
	defer syncR.Close()
	startR, startW, err := os.Pipe()
	if err != nil {
		syncW.Close()
		return 0, fmt.Errorf("create %s: %w", c.ID, err)
	}
	defer startW.Close()
	monLog, err := os.OpenFile(mon.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		syncW.Close()
		startR.Close()
		return 0, fmt.Errorf("create %s: %w", c.ID, err)
	}
	defer monLog.Close()

	// Not CommandContext: the monitor must outlive ctx and this process.
	cmd := exec.Command(mon.path, mon.args...)
	cmd.Dir = files.Bundle
	cmd.Env = append(envWithout(os.Environ(), "NOTIFY_SOCKET", syncPipeEnv, startPipeEnv, monitorStageEnv),
		syncPipeEnv+"=3", startPipeEnv+"=4")
	cmd.ExtraFiles = []*os.File{syncW, startR} // fds 3 and 4
	cmd.Stderr = monLog
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	syncW.Close()
	startR.Close()
	if err != nil {
		return 0, fmt.Errorf("create %s: start %s: %w", c.ID, mon.name, err)
	}

	defer func() {
		if retErr != nil {
			r.cleanupFailedCreate(ctx, files, mon, log)
		}
	}()
	// The monitor waits for this byte, so that it and the runtime start
	// in the right cgroup.
	if c.CgroupParent != "" {
		cg := MonitorCgroup(c.CgroupParent, c.ID)
		if err := host.MoveToCgroup(cmd.Process.Pid, cg); err != nil {
			log.Warn(mon.name+" stays in crisp's cgroup", slog.String("cgroup", cg), slog.Any(logkey.Err, err))
		}
	}
	if _, err := startW.Write([]byte{0}); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 0, fmt.Errorf("create %s: signal %s: %w", c.ID, mon.name, err)
	}
	startW.Close()
	// Both monitors double-fork: this returns within milliseconds.
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("create %s: %s: %w%s", c.ID, mon.name, err, tailOf(monLog.Name()))
	}

	pid, err = readSyncPipe(ctx, syncR, mon.name)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w%s", c.ID, err, tailOf(monLog.Name()))
	}
	log.Debug("container created", slog.String("monitor", mon.name), slog.Int("pid", pid), slog.Duration(logkey.Took, time.Since(start)))
	return pid, nil
}

// monitorProc is the per-container monitor Create launches: conmon, or
// crisp's own for runsc sub-containers. Both speak conmon's sync and
// start pipe protocol, write their own pid into the bundle and
// double-fork.
type monitorProc struct {
	name    string // for messages: "conmon" or "monitor"
	path    string
	args    []string
	logFile string             // gets the monitor's stderr
	pidFile string             // the monitor's own pid
	isAlive func(pid int) bool // whether pid is still this monitor
}

// conmonProc is conmon for c, which prepare has checked.
func (r *Runtime) conmonProc(c CreateOpts, files layout.Container) monitorProc {
	return monitorProc{name: "conmon", path: r.conmon, args: r.conmonArgs(c, files),
		logFile: files.ConmonLog(), pidFile: files.ConmonPidFile(), isAlive: isConmon}
}

// prepare checks c and the bundle's path and creates the directories
// conmon writes to.
func (r *Runtime) prepare(c CreateOpts, files layout.Container) error {
	if c.LogPath == "" {
		return errors.New("no log path")
	}
	if !filepath.IsAbs(files.Bundle) {
		return fmt.Errorf("bundle path %s is not absolute", files.Bundle)
	}
	if n := len(files.AttachSocket()); n > sockPathMax {
		return fmt.Errorf("bundle path %s too long for the attach socket (%d > %d bytes)", files.Bundle, n, sockPathMax)
	}
	for _, d := range []string{r.h.Root, r.files.Exits(), files.PersistDir(), filepath.Dir(c.LogPath), r.files.Attach()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// Stale pid files would make cleanupFailedCreate signal a stranger.
	for _, f := range files.MonitorPidFiles() {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// conmonArgs is conmon's command line for c, which prepare has checked.
func (r *Runtime) conmonArgs(c CreateOpts, files layout.Container) []string {
	args := []string{
		"--api-version", "1",
		"-c", c.ID, "-u", c.ID, "-n", c.ID,
		"-r", r.h.Path,
		"--runtime-arg", "--root=" + r.h.Root,
	}
	for _, a := range r.runtimeArgs() {
		args = append(args, "--runtime-arg", a)
	}
	args = append(args,
		"-b", files.Bundle,
		"-p", files.InitPidFile(),
		"-P", files.ConmonPidFile(),
		"--persist-dir", files.PersistDir(),
		"--exit-dir", r.files.Exits(),
		"-l", c.LogPath,
		// With --full-attach the attach socket is in the bundle
		// (files.AttachSocket), but conmon wants this dir all the same.
		"--socket-dir-path", r.files.Attach(),
		"--full-attach", "--log-level", "info",
	)
	// Never -s: it is --systemd-cgroup, and there is no systemd here.
	if c.Terminal {
		args = append(args, "-t")
	} else if c.Stdin {
		args = append(args, "-i")
		if !c.StdinOnce {
			args = append(args, "--leave-stdin-open")
		}
	}
	return args
}

// cleanupFailedCreate stops the monitor if it is still there (its runtime
// child dies with it: both monitors set PDEATHSIG) and force-deletes the
// container.
func (r *Runtime) cleanupFailedCreate(ctx context.Context, files layout.Container, mon monitorProc, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if pid, err := readPidFile(mon.pidFile); err == nil && mon.isAlive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if _, err := r.run(ctx, nil, "delete", "--force", files.ID); err != nil && !errors.Is(err, ErrNotFound) {
		log.Warn("cleanup after failed create", slog.Any(logkey.Err, err))
	}
	// runsc leaves the container's cgroup behind after a failed create.
	if path := specCgroupsPath(files); strings.HasPrefix(path, "/") {
		_ = host.RemoveCgroup(path) // the reconciler's sweep retries what is busy
	}
}
