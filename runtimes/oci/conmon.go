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

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// CreateOpts describe a container for Create. ID, Bundle, LogPath, ExitDir
// and PersistDir are required; Create makes the directories it names.
type CreateOpts struct {
	ID     string
	Bundle string // holds config.json; conmon also puts pidfile, conmon.pid, conmon.log, ctl and attach here

	LogPath    string // CRI log file (k8s-file format), conmon -l
	ExitDir    string // conmon --exit-dir: <ExitDir>/<ID> gets the exit code
	PersistDir string // conmon --persist-dir: gets "exit" and, after an OOM kill, "oom"
	// SocketDir is passed as --socket-dir-path. conmon runs with
	// --full-attach, so the attach socket is <Bundle>/attach and Bundle
	// must stay short (Create checks the 108-byte socket path limit).
	SocketDir string

	Terminal  bool // the spec's process.terminal must match
	Stdin     bool // keep a stdin pipe that attach can write to
	StdinOnce bool // close the container's stdin when the first attach ends

	// CgroupParent, when set, is a cgroupfs path (like "/kubepods/pod1")
	// that conmon is moved into, on the v1 memory, pids, cpu and cpuacct
	// hierarchies, before it starts the runtime. Failures are logged, not
	// returned. conmon stays there until shortly after the container
	// exits, so removing that cgroup can meet EBUSY until then.
	CgroupParent string
}

// Files conmon writes into the bundle.
const (
	pidFileName    = "pidfile"    // container init pid (-p)
	conmonPidName  = "conmon.pid" // conmon's own pid (-P)
	conmonLogName  = "conmon.log" // conmon's stderr until it daemonises
	ctlFifoName    = "ctl"        // control FIFO, see ReopenLog
	attachSockName = "attach"     // attach socket with --full-attach
)

const (
	sockPathMax    = 107              // sun_path is 108 bytes with the NUL
	cleanupTimeout = 30 * time.Second // for undoing a failed Create; runsc delete is slow
)

// Create starts conmon for the container in c.Bundle, whose config.json
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
	if err := r.prepare(&c); err != nil {
		return 0, fmt.Errorf("create %s: %w", c.ID, err)
	}
	log := r.log.With(slog.String(logkey.Container, c.ID))
	mon := r.conmonProc(c)
	if r.isRunsc() && isSubcontainer(c.Bundle) {
		var err error
		if mon, err = r.monitorProc(c); err != nil {
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
	monLog, err := os.OpenFile(filepath.Join(c.Bundle, mon.logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		syncW.Close()
		startR.Close()
		return 0, fmt.Errorf("create %s: %w", c.ID, err)
	}
	defer monLog.Close()

	// Not CommandContext: the monitor must outlive ctx and this process.
	cmd := exec.Command(mon.path, mon.args...)
	cmd.Dir = c.Bundle
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
			r.cleanupFailedCreate(ctx, c, mon, log)
		}
	}()
	// The monitor waits for this byte, so that it and the runtime start
	// in the right cgroup.
	if c.CgroupParent != "" {
		if err := moveToCgroup(cmd.Process.Pid, c.CgroupParent); err != nil {
			log.Warn(mon.name+" stays in crisp's cgroup", slog.String("cgroup", c.CgroupParent), slog.Any(logkey.Err, err))
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
	logName string             // bundle file that gets the monitor's stderr
	pidName string             // bundle file with the monitor's own pid
	isAlive func(pid int) bool // whether pid is still this monitor
}

// conmonProc is conmon for c, which prepare has checked.
func (r *Runtime) conmonProc(c CreateOpts) monitorProc {
	return monitorProc{name: "conmon", path: r.conmon, args: r.conmonArgs(c),
		logName: conmonLogName, pidName: conmonPidName, isAlive: isConmon}
}

// prepare checks c, makes Bundle absolute and creates the directories
// conmon writes to.
func (r *Runtime) prepare(c *CreateOpts) error {
	if c.ID == "" || strings.ContainsAny(c.ID, "/\x00") || c.ID == "." || c.ID == ".." {
		return fmt.Errorf("invalid container id %q", c.ID)
	}
	for name, v := range map[string]string{"bundle": c.Bundle, "log path": c.LogPath,
		"exit dir": c.ExitDir, "persist dir": c.PersistDir} {
		if v == "" {
			return fmt.Errorf("no %s", name)
		}
	}
	bundle, err := filepath.Abs(c.Bundle)
	if err != nil {
		return err
	}
	c.Bundle = bundle
	if n := len(filepath.Join(bundle, attachSockName)); n > sockPathMax {
		return fmt.Errorf("bundle path %s too long for the attach socket (%d > %d bytes)", bundle, n, sockPathMax)
	}
	dirs := []string{r.h.Root, c.ExitDir, c.PersistDir, filepath.Dir(c.LogPath)}
	if c.SocketDir != "" {
		dirs = append(dirs, c.SocketDir)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// Stale pid files would make cleanupFailedCreate signal a stranger.
	for _, f := range []string{pidFileName, conmonPidName, monitorPidName} {
		if err := os.Remove(filepath.Join(bundle, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// conmonArgs is conmon's command line for c, which prepare has checked.
func (r *Runtime) conmonArgs(c CreateOpts) []string {
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
		"-b", c.Bundle,
		"-p", filepath.Join(c.Bundle, pidFileName),
		"-P", filepath.Join(c.Bundle, conmonPidName),
		"--persist-dir", c.PersistDir,
		"--exit-dir", c.ExitDir,
		"-l", c.LogPath,
	)
	if c.SocketDir != "" {
		args = append(args, "--socket-dir-path", c.SocketDir)
	}
	args = append(args, "--full-attach", "--log-level", "info")
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
func (r *Runtime) cleanupFailedCreate(ctx context.Context, c CreateOpts, mon monitorProc, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if pid, err := readPidFile(filepath.Join(c.Bundle, mon.pidName)); err == nil && mon.isAlive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if _, err := r.run(ctx, nil, "delete", "--force", c.ID); err != nil && !errors.Is(err, ErrNotFound) {
		log.Warn("cleanup after failed create", slog.Any(logkey.Err, err))
	}
	// runsc leaves the container's cgroup behind after a failed create.
	if path := specCgroupsPath(c.Bundle); strings.HasPrefix(path, "/") {
		removeCgroup(path)
	}
}
