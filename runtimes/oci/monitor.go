package oci

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/crisp-cri/crisp/runtimes/layout"
)

// MonitorArgs describe one container for RunMonitor. Create builds them
// from its CreateOpts and the handler; crispd's hidden monitor command
// gets them back with ParseMonitorArgs.
type MonitorArgs struct {
	ID          string
	RunDir      string   // absolute; the container's files are where its layout says
	Runtime     string   // the runsc binary
	RuntimeRoot string   // runsc --root
	RuntimeArgs []string // further global runsc args, e.g. --network=host
	LogPath     string   // CRI log file (k8s-file format)
	Stdin       bool     // the container reads stdin: attach sessions write to it
	StdinOnce   bool     // the first attach session to end closes that stdin
}

// files are the container's paths: its bundle, which holds config.json
// and the monitor's own files, and its exit file.
func (a MonitorArgs) files() layout.Container { return layout.New(a.RunDir).Container(a.ID) }

// monitorStageEnv marks the detached second stage of the monitor.
const monitorStageEnv = "_CRISP_MONITOR_STAGE"

// argv is the command line ParseMonitorArgs reads back.
func (a MonitorArgs) argv() []string {
	args := []string{"--id=" + a.ID, "--run-dir=" + a.RunDir, "--runtime=" + a.Runtime,
		"--runtime-root=" + a.RuntimeRoot}
	for _, ra := range a.RuntimeArgs {
		args = append(args, "--runtime-arg="+ra)
	}
	if a.Stdin {
		args = append(args, "--stdin")
	}
	if a.StdinOnce {
		args = append(args, "--stdin-once")
	}
	return append(args, "--log-path="+a.LogPath)
}

// ParseMonitorArgs parses the monitor's command line: everything Create
// puts after Handler.Monitor. crispd's monitor command passes its
// arguments here and the result to RunMonitor.
func ParseMonitorArgs(argv []string) (MonitorArgs, error) {
	var a MonitorArgs
	fs := flag.NewFlagSet("monitor", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&a.ID, "id", "", "container id")
	fs.StringVar(&a.RunDir, "run-dir", "", "crispd's run dir")
	fs.StringVar(&a.Runtime, "runtime", "", "runsc binary")
	fs.StringVar(&a.RuntimeRoot, "runtime-root", "", "runsc --root")
	fs.Func("runtime-arg", "global runsc argument (repeatable)", func(s string) error {
		a.RuntimeArgs = append(a.RuntimeArgs, s)
		return nil
	})
	fs.StringVar(&a.LogPath, "log-path", "", "CRI log file")
	fs.BoolVar(&a.Stdin, "stdin", false, "the container reads stdin, from attach sessions")
	fs.BoolVar(&a.StdinOnce, "stdin-once", false, "the first attach session to end closes the container's stdin")
	if err := fs.Parse(argv); err != nil {
		return MonitorArgs{}, fmt.Errorf("monitor: %w", err)
	}
	if fs.NArg() > 0 {
		return MonitorArgs{}, fmt.Errorf("monitor: unexpected arguments %q", fs.Args())
	}
	return a, a.validate()
}

func (a MonitorArgs) validate() error {
	if err := layout.CheckID(a.ID); err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	for name, v := range map[string]string{"--run-dir": a.RunDir, "--runtime": a.Runtime,
		"--runtime-root": a.RuntimeRoot, "--log-path": a.LogPath} {
		if v == "" {
			return fmt.Errorf("monitor: no %s", name)
		}
	}
	if !filepath.IsAbs(a.RunDir) {
		return fmt.Errorf("monitor: run dir %s is not absolute", a.RunDir)
	}
	return nil
}

// RunMonitor is crisp's per-container monitor for the sub-containers of a
// gVisor pod, which conmon cannot watch: `runsc create` of a container
// joining a sandbox leaves no process for conmon to wait for, so conmon
// reports it dead (exit -1) at once. crispd runs it as a hidden
// subcommand (Handler.Monitor); it is not meant to be run by hand.
//
// It speaks conmon's launch protocol (_OCI_STARTPIPE, _OCI_SYNCPIPE) and
// detaches like conmon: the first call waits for the start byte, re-runs
// the same binary with the same arguments in a new session and returns
// nil at once; the caller should exit then. That second process, whose
// parent becomes PID 1, is the monitor. It runs `runsc create`, writes
// the container pid (the sandbox's) on the sync pipe and serves
// <bundle>/monitor.sock, through which Runtime.Start has it run
// `runsc start` with stdout and stderr pipes it owns (runsc hands the
// stdio of `start`, not of `create`, to a sub-container). It copies the
// container's output into LogPath in CRI format, reopens that file on
// "2 ..." lines in the <bundle>/ctl FIFO (ReopenLog), waits with
// `runsc wait`, and writes the exit code to <ExitDir>/<ID> and
// <PersistDir>/exit through temporary files, as conmon does. A container
// that vanishes or stops before it is started counts as killed (137).
// It serves the bundle's attach socket as conmon does (output to every
// client; with Stdin, what clients send is the container's stdin). There
// is no terminal and no OOM marker.
func RunMonitor(a MonitorArgs) error {
	if err := a.validate(); err != nil {
		return err
	}
	if os.Getenv(monitorStageEnv) == "2" {
		return runMonitor(a)
	}
	return detachMonitor()
}

// detachMonitor is the monitor's first stage: it waits for the launcher's
// start byte, starts the second stage in a new session and returns.
func detachMonitor() error {
	syncW := pipeFromEnv(syncPipeEnv)
	if startR := pipeFromEnv(startPipeEnv); startR != nil {
		var b [1]byte
		n, _ := startR.Read(b[:])
		startR.Close()
		if n == 0 {
			return errors.New("monitor: the launcher closed the start pipe")
		}
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(envWithout(os.Environ(), monitorStageEnv, syncPipeEnv, startPipeEnv), monitorStageEnv+"=2")
	if syncW != nil {
		cmd.ExtraFiles = []*os.File{syncW} // fd 3
		cmd.Env = append(cmd.Env, syncPipeEnv+"=3")
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		err = fmt.Errorf("monitor: detach: %w", err)
		_ = writeSync(syncW, syncMessage{Data: -1, Message: err.Error()})
		return err
	}
	return cmd.Process.Release()
}
