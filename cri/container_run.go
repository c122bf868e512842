package cri

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/failpoint"
	"github.com/crisp-cri/crisp/cri/ocispec"
	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/host"
	"github.com/crisp-cri/crisp/runtimes/layout"
	"github.com/crisp-cri/crisp/runtimes/logkey"
	"github.com/crisp-cri/crisp/runtimes/oci"
)

// StartContainer starts a created container and records its pid with the
// pid's start time, so a recycled pid is never taken for it.
func (s *Server) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	c, rt, err := s.containerAndRuntime(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	unlock := s.locks.lock(c.ID)
	defer unlock()
	if c.State != db.ContainerCreated {
		return nil, fmt.Errorf("start container %s: it is %s, not created: %w", c.ID, c.State, ErrPrecondition)
	}
	t := startSteps()
	if err := s.ensureMonitor(ctx, c, rt); err != nil {
		return nil, fmt.Errorf("start container %s: %w", c.ID, err)
	}
	failpoint.Hit("container.start.before-runtime")
	if err := rt.Start(ctx, c.ID); err != nil {
		// kubelet's retry of a start that a crash cut off after the
		// runtime had started the container: record it, as the first
		// call would have.
		if st, serr := rt.State(ctx, c.ID); serr != nil || st.Status != "running" {
			return nil, fmt.Errorf("start container %s: %w", c.ID, err)
		}
	}
	failpoint.Hit("container.start.after-runtime")
	t.done("runtime-start")
	pid, err := s.initPID(ctx, rt, c.ID)
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", c.ID, err)
	}
	t.done("pid")
	if err := s.store.MarkContainerStarted(ctx, c.ID, db.Started{PID: pid, PIDStart: host.ProcStart(pid), At: time.Now().UnixNano()}); err != nil {
		return nil, fmt.Errorf("start container %s: %w", c.ID, err)
	}
	// A container that exited at once may have beaten the row to running.
	s.recordExit(ctx, c.ID)
	t.log(ctx, s.log.With(slog.String(logkey.Container, c.ID)), "StartContainer")
	s.log.Info("container started", slog.String(logkey.Container, c.ID), slog.Int("pid", pid))
	return &runtimeapi.StartContainerResponse{}, nil
}

// initPID is a started container's init pid: from the pid file its monitor
// wrote at create, which saves running the runtime, else from the runtime.
func (s *Server) initPID(ctx context.Context, rt Runtime, id string) (int, error) {
	if pid, err := oci.InitPID(s.files.Container(id)); err == nil {
		return pid, nil
	}
	st, err := rt.State(ctx, id)
	return st.PID, err
}

// StopContainer sends the stop signal (the image's, else SIGTERM), waits up
// to timeout seconds, then SIGKILLs. Stopping a stopped or unknown
// container succeeds.
func (s *Server) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	c, rt, err := s.containerAndRuntime(ctx, req.GetContainerId())
	if errors.Is(err, db.ErrNotFound) {
		return &runtimeapi.StopContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	unlock := s.locks.lock(c.ID)
	defer unlock()
	t := startSteps()
	if err := s.stopContainer(ctx, c, rt, time.Duration(req.GetTimeout())*time.Second); err != nil {
		return nil, fmt.Errorf("stop container %s: %w", c.ID, err)
	}
	t.done("stop")
	t.log(ctx, s.log.With(slog.String(logkey.Container, c.ID)), "StopContainer")
	return &runtimeapi.StopContainerResponse{}, nil
}

func (s *Server) stopContainer(ctx context.Context, c db.Container, rt Runtime, timeout time.Duration) error {
	if c.State == db.ContainerCreated {
		return s.stopCreated(ctx, c, rt)
	}
	if c.State != db.ContainerRunning {
		return nil
	}
	if timeout > 0 && c.State == db.ContainerRunning {
		sig := s.stopSignal(ctx, c)
		// runc's init is the container's own; runsc's pid is its sandbox's,
		// which only the runtime may signal.
		sent := false
		if rt.Handler().Type == oci.TypeRunc {
			_, sent = signalInit(c.PID, c.PIDStart, sig)
		}
		if !sent {
			if err := rt.Kill(ctx, c.ID, sig, false); err != nil && !errors.Is(err, oci.ErrNotRunning) && !errors.Is(err, oci.ErrNotFound) {
				return err
			}
		}
		failpoint.Hit("container.stop.after-signal")
		if s.waitExit(ctx, c.ID, timeout) {
			return nil
		}
	}
	if err := rt.Kill(ctx, c.ID, syscall.SIGKILL, true); err != nil && !errors.Is(err, oci.ErrNotRunning) && !errors.Is(err, oci.ErrNotFound) {
		return err
	}
	failpoint.Hit("container.stop.after-kill")
	if !s.waitExit(ctx, c.ID, 30*time.Second) {
		return fmt.Errorf("container %s did not exit 30s after SIGKILL", c.ID)
	}
	return nil
}

// ensureMonitor makes sure a created container has its monitor before it
// starts: a crash of crispd while the monitor was being set up kills the
// monitor (its sync pipe breaks) after the runtime created the container,
// and nothing would then record the container's exit. Such a container
// never ran, so it is created again, under a new monitor.
func (s *Server) ensureMonitor(ctx context.Context, c db.Container, rt Runtime) error {
	// Under runsc a sub-container cannot be created again in its sandbox.
	if rt.Handler().Type != oci.TypeRunc || oci.MonitorAlive(s.files.Container(c.ID)) {
		return nil
	}
	if st, err := rt.State(ctx, c.ID); err != nil || st.Status != "created" {
		return nil // not ours to redo; Start says what is wrong
	}
	cfg, err := containerConfig(c)
	if err != nil {
		return err
	}
	s.log.Warn("container lost its monitor before it started; creating it again",
		slog.String(logkey.Container, c.ID))
	if err := ignoreNotFound(rt.Delete(ctx, c.ID, true)); err != nil {
		return err
	}
	// A monitor crisp could not see (its pid file lost) may have recorded
	// the deleted container's exit: that exit is not the new one's.
	if err := removeExit(s.files.Container(c.ID)); err != nil {
		return err
	}
	if _, err := rt.Create(ctx, s.createOpts(c, cfg)); err != nil {
		return fmt.Errorf("create again in the runtime: %w", err)
	}
	return nil
}

// removeExit removes the exit a container's monitor recorded, wherever it
// keeps it; what is not there is no error.
func removeExit(files layout.Container) error {
	for _, f := range []string{files.ExitFile, files.PersistExitFile(), files.OOMFile()} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale exit of container %s: %w", files.ID, err)
		}
	}
	return nil
}

// stopCreated stops a container that was never started. Its init only
// waits to be started, so there is nothing to signal (runsc refuses to):
// deleting it from the runtime ends it, and its monitor records the exit.
// A monitor that cannot (a runsc sub-container's) is killed, and crisp
// records the exit itself.
func (s *Server) stopCreated(ctx context.Context, c db.Container, rt Runtime) error {
	if err := ignoreNotFound(rt.Delete(ctx, c.ID, true)); err != nil {
		return err
	}
	if s.waitExit(ctx, c.ID, 2*time.Second) {
		return nil
	}
	if err := oci.KillMonitor(s.files.Container(c.ID)); err != nil {
		return err
	}
	exit := db.Exit{Code: 137, Reason: db.ExitError, Message: "stopped before it was started", At: time.Now().UnixNano()}
	if err := s.store.MarkContainerExited(ctx, c.ID, exit); err != nil && !errors.Is(err, db.ErrWrongState) {
		return err
	}
	return nil
}

// waitExit waits up to d for the container's exit to be recorded. The exit
// watcher wakes it when the exit file appears; it also looks now and then,
// in case a notice was missed.
func (s *Server) waitExit(ctx context.Context, id string, d time.Duration) bool {
	exited, stop := s.exits.wait(id)
	defer stop()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.recordExit(ctx, id) {
			return true
		}
		select {
		case <-exited:
		case <-tick.C:
		case <-deadline.C:
			return s.recordExit(ctx, id)
		case <-ctx.Done():
			return false
		}
	}
}

// recordExit records a container's exit from conmon's exit file, once; it
// reports whether the container has exited (now or before). Callers hold
// the container's lock.
func (s *Server) recordExit(ctx context.Context, id string) bool {
	c, err := s.store.Container(ctx, id)
	if err != nil {
		return errors.Is(err, db.ErrNotFound)
	}
	if c.State == db.ContainerExited {
		return true
	}
	files := s.files.Container(id)
	code, oom, ok, err := oci.ReadExit(files)
	if err != nil || !ok {
		return false
	}
	reason := db.ExitReason(code, oom)
	at := time.Now()
	if fi, err := os.Stat(files.ExitFile); err == nil {
		at = fi.ModTime()
	}
	err = s.store.MarkContainerExited(ctx, id, db.Exit{Code: code, Reason: reason, At: at.UnixNano()})
	if err != nil && !errors.Is(err, db.ErrWrongState) {
		s.log.Error("record container exit", slog.String(logkey.Container, id), slog.Any(logkey.Err, err))
		return false
	}
	s.log.Info("container exited", slog.String(logkey.Container, id), slog.Int("exit_code", int(code)), slog.String(logkey.Reason, reason))
	return true
}

// WatchExits records container exits as conmon reports them, until ctx
// ends: ContainerStatus shows an exit about as soon as it happens.
func (s *Server) WatchExits(ctx context.Context) error {
	ids, err := oci.WatchExits(ctx, s.files.Exits())
	if err != nil {
		return err
	}
	for id := range ids {
		s.exits.notify(id) // a Stop holding the lock records it itself
		// Under the container's lock: a container that exits at once must
		// not be recorded exited before StartContainer records it running.
		unlock := s.locks.lock(id)
		s.recordExit(ctx, id)
		unlock()
	}
	return nil
}

// stopSignal is the container's stop signal: as resolved at create, else
// (a row from before that was recorded) its config's or image's, else
// SIGTERM.
func (s *Server) stopSignal(ctx context.Context, c db.Container) syscall.Signal {
	if c.StopSignal > 0 {
		return syscall.Signal(c.StopSignal)
	}
	cfg, _ := containerConfig(c)
	img, err := s.images.Status(ctx, c.ImageRef)
	if err != nil {
		return syscall.SIGTERM
	}
	sig, err := ocispec.ContainerStopSignal(cfg, img.Config)
	if err != nil || sig == 0 {
		return syscall.SIGTERM
	}
	return sig
}

// RemoveContainer removes a container, killing it first if it runs; its
// side effects go first and the row last. Removing an unknown container
// succeeds.
func (s *Server) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	c, rt, err := s.containerAndRuntime(ctx, req.GetContainerId())
	if errors.Is(err, db.ErrNotFound) {
		return &runtimeapi.RemoveContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	unlock := s.locks.lock(c.ID)
	defer unlock()
	t := startSteps()
	if err := s.removeContainer(ctx, c, rt, t); err != nil {
		return nil, fmt.Errorf("remove container %s: %w", c.ID, err)
	}
	t.log(ctx, s.log.With(slog.String(logkey.Container, c.ID)), "RemoveContainer")
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (s *Server) removeContainer(ctx context.Context, c db.Container, rt Runtime, t *steps) error {
	if err := s.stopContainer(ctx, c, rt, 0); err != nil {
		return err
	}
	err := s.store.SetContainerState(ctx, c.ID, db.ContainerRemoving,
		db.ContainerCreated, db.ContainerExited, db.ContainerUnknown, db.ContainerRemoving)
	if err != nil {
		return err
	}
	failpoint.Hit("container.remove.after-state")
	t.done("mark-removing")
	// The runtime's container and the rootfs do not depend on each other:
	// delete them side by side.
	deleted := make(chan error, 1)
	go func() {
		// The container has stopped, so a plain delete does; force (which
		// asks the runtime for the state first) only if it did not.
		err := rt.Delete(ctx, c.ID, false)
		if err != nil && !errors.Is(err, oci.ErrNotFound) {
			err = ignoreNotFound(rt.Delete(ctx, c.ID, true))
		} else {
			err = nil
		}
		failpoint.Hit("container.remove.after-runtime")
		deleted <- err
	}()
	storageErr := errors.Join(s.images.RemoveContainer(c.ID), s.removeImageVolumes(c))
	if err := errors.Join(<-deleted, storageErr); err != nil {
		return err
	}
	t.done("runtime-and-storage")
	if err := oci.RemoveLeftovers(s.files.Container(c.ID)); err != nil {
		return err
	}
	failpoint.Hit("container.remove.before-row")
	if err := s.store.DeleteContainer(ctx, c.ID); err != nil && !errors.Is(err, db.ErrNotFound) {
		return err
	}
	s.log.Info("container removed", slog.String(logkey.Container, c.ID))
	return nil
}

// ExecSync runs a command in a running container, as its own user and
// environment, and returns its output and exit code.
func (s *Server) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if len(req.GetCmd()) == 0 {
		return nil, fmt.Errorf("exec sync: cmd is empty: %w", ErrInvalid)
	}
	c, rt, err := s.containerAndRuntime(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c.State != db.ContainerRunning {
		return nil, fmt.Errorf("exec in container %s: it is %s, not running: %w", c.ID, c.State, ErrPrecondition)
	}
	proc, err := s.containerProcess(c.ID)
	if err != nil {
		return nil, err
	}
	proc.Args, proc.Terminal = req.Cmd, false
	stdout, stderr, code, err := rt.ExecSync(ctx, c.ID, proc, time.Duration(req.GetTimeout())*time.Second)
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", c.ID, err)
	}
	return &runtimeapi.ExecSyncResponse{Stdout: stdout, Stderr: stderr, ExitCode: int32(code)}, nil
}

// containerProcess reads the process of a container's OCI spec: exec'd
// commands run with its user, environment and working directory.
func (s *Server) containerProcess(id string) (specs.Process, error) {
	spec, err := s.files.Container(id).ReadSpec()
	if err != nil {
		return specs.Process{}, fmt.Errorf("container %s: %w", id, err)
	}
	if spec.Process == nil {
		return specs.Process{}, fmt.Errorf("OCI spec of container %s has no process", id)
	}
	return *spec.Process, nil
}

// containerAndRuntime resolves a container and the runtime of its pod.
func (s *Server) containerAndRuntime(ctx context.Context, id string) (db.Container, Runtime, error) {
	c, err := s.containerFor(ctx, id)
	if err != nil {
		return db.Container{}, nil, err
	}
	sb, err := s.store.Sandbox(ctx, c.SandboxID)
	if err != nil {
		return db.Container{}, nil, err
	}
	rt, err := s.runtimeFor(sb.Handler)
	return c, rt, err
}
