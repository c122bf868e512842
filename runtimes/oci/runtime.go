// Package oci runs OCI containers for one runtime handler (runc or runsc),
// with conmon as each container's monitor, except for the sub-containers
// of a gVisor pod, which conmon cannot watch: they get crisp's own monitor
// (RunMonitor), which leaves the same files behind. It owns the runtime's
// state root, the monitor invocation, the runtime's command line (state,
// start, kill, delete, exec, update, events) and the files the monitors
// leave behind: exit files, OOM markers and the log-reopen control FIFO.
//
// It knows nothing of SQL, gRPC or CRI: it imports nothing from crisp's db or
// cri packages. Where a container's files are is runtimes/layout's to say:
// the Runtime is given the layout once, and the caller writes config.json
// into the bundle the layout names.
//
// Runtime failures are reported as errors wrapping ErrNotFound,
// ErrNotRunning or ErrUnsupported where they apply; a runtime's non-zero
// exit stays reachable as *runc.ExitError (github.com/containerd/go-runc).
package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	runc "github.com/containerd/go-runc"

	"github.com/crisp-cri/crisp/runtimes/layout"
	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// Handler is one configured runtime handler.
type Handler struct {
	Name      string   // handler name, as CRI's RuntimeHandler: "runc", "runsc", ...
	Path      string   // runtime binary
	Root      string   // the runtime's own state root (--root); one per handler
	Type      string   // TypeRunc or TypeRunsc; anything else is treated as runc
	ExtraArgs []string // extra global args, e.g. runsc's --oci-seccomp
	// Network is runsc's --network, NetworkSandbox or NetworkHost, given
	// on every runsc command line; "" gives none (runsc's own default).
	Network string
	// Platform is runsc's --platform (systrap, ptrace, kvm), given on
	// every runsc command line; "" gives none (runsc's own default).
	Platform string
	// NetNSShim is the command line prefix that runs RunNetNSShim:
	// crispd wires {"/path/to/crispd", "runsc-netns-shim"}. Under
	// NetworkSandbox, `runsc start` of a pod's sandbox runs through it.
	// Without it, runsc is run as is.
	NetNSShim []string
	// Monitor is the command line prefix that runs RunMonitor, crisp's
	// own monitor for the sub-containers of a gVisor pod, which conmon
	// cannot watch: crispd wires {"/path/to/crispd", "monitor"}, and Create
	// appends the monitor's own flags (see ParseMonitorArgs). Without it,
	// Create refuses runsc sub-containers.
	Monitor []string
}

// Runtime types. They select the command-line quirks of the runtime.
const (
	TypeRunc  = "runc"
	TypeRunsc = "runsc"
)

// Network modes of a runsc handler (Handler.Network).
const (
	// NetworkSandbox: gVisor's own network stack (netstack) takes over the
	// interfaces of the network namespace the OCI spec names; the host
	// kernel no longer serves the pod's addresses.
	NetworkSandbox = "sandbox"
	// NetworkHost: gVisor hands the pod's sockets to the host kernel,
	// inside the pod's network namespace.
	NetworkHost = "host"
)

// State is a container as the runtime reports it.
type State struct {
	ID      string
	Status  string // created, running, paused or stopped
	PID     int    // init's host pid (runsc: the sandbox process); 0 when stopped
	Bundle  string
	Created time.Time // zero on runsc
}

// Runtime runs containers for one Handler. It holds no mutable state, so
// its methods are safe for concurrent use; callers serialise lifecycle
// operations on one id themselves. Methods taking an id return errors
// wrapping ErrNotFound when the runtime does not know it.
type Runtime struct {
	h      Handler
	conmon string
	files  layout.Layout
	log    *slog.Logger
}

// New returns the Runtime for h, with conmon at conmonPath, keeping its
// containers' files where files says. A nil log discards logs. It does
// not touch the filesystem.
func New(h Handler, conmonPath string, files layout.Layout, log *slog.Logger) *Runtime {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h.ExtraArgs = append([]string(nil), h.ExtraArgs...)
	h.NetNSShim = append([]string(nil), h.NetNSShim...)
	h.Monitor = append([]string(nil), h.Monitor...)
	return &Runtime{h: h, conmon: conmonPath, files: files, log: log.With(slog.String(logkey.Runtime, h.Name))}
}

// Handler returns the handler r was built with (a copy).
func (r *Runtime) Handler() Handler {
	h := r.h
	h.ExtraArgs = append([]string(nil), r.h.ExtraArgs...)
	h.NetNSShim = append([]string(nil), r.h.NetNSShim...)
	h.Monitor = append([]string(nil), r.h.Monitor...)
	return h
}

func (r *Runtime) isRunsc() bool { return r.h.Type == TypeRunsc }

// Netstack reports whether the handler's pods are served by gVisor's own
// network stack, which nothing on the host side of the pod's network
// namespace can reach (port-forward must go through the sandbox).
func (r *Runtime) Netstack() bool { return r.isRunsc() && r.h.Network == NetworkSandbox }

// runtimeArgs are the global flags after --root: runsc's --network and
// --platform, then ExtraArgs.
func (r *Runtime) runtimeArgs() []string {
	var args []string
	if r.isRunsc() && r.h.Network != "" {
		args = append(args, "--network="+r.h.Network)
	}
	if r.isRunsc() && r.h.Platform != "" {
		args = append(args, "--platform="+r.h.Platform)
	}
	return append(args, r.h.ExtraArgs...)
}

// globalArgs go before the subcommand on every runtime invocation.
func (r *Runtime) globalArgs() []string {
	return append([]string{"--root", r.h.Root}, r.runtimeArgs()...)
}

// ExecTTYArgs are the flags of `exec` that give the process a terminal:
// runc's --tty. runsc has no such flag; process.terminal in the process
// file makes the stdio it runs with the terminal.
func (r *Runtime) ExecTTYArgs() []string {
	if r.isRunsc() {
		return nil
	}
	return []string{"--tty"}
}

// GlobalArgs are the flags crisp puts before the subcommand on every
// runtime command line, as one "--root=<root>" and the rest: for callers
// that run the runtime themselves (the streaming server's exec).
func (r *Runtime) GlobalArgs() []string {
	return append([]string{"--root=" + r.h.Root}, r.runtimeArgs()...)
}

// command builds a runtime invocation. go-runc's own methods are not used
// for these subcommands because v1.2.1 formats their failures with %s
// (losing *runc.ExitError) and merges stderr into the JSON it parses.
func (r *Runtime) command(ctx context.Context, args ...string) *exec.Cmd {
	return r.shimmedCommand(ctx, "", args...)
}

// shimmedCommand is command run through Handler.NetNSShim, which is given
// the network namespace shimNetNS (see RunNetNSShim); with shimNetNS ""
// it is command.
func (r *Runtime) shimmedCommand(ctx context.Context, shimNetNS string, args ...string) *exec.Cmd {
	path, argv := r.h.Path, append(r.globalArgs(), args...)
	if shimNetNS != "" {
		path = r.h.NetNSShim[0]
		argv = append(append(slices.Clone(r.h.NetNSShim[1:]), netNSShimArgs(shimNetNS, r.h.Path)...), argv...)
	}
	cmd := exec.CommandContext(ctx, path, argv...)
	// NOTIFY_SOCKET makes runc talk to systemd; it is never meant for us.
	cmd.Env = envWithout(os.Environ(), "NOTIFY_SOCKET")
	return cmd
}

// run runs a short runtime command and returns its stdout. Failures are
// translated; a cancelled ctx yields ctx's error.
func (r *Runtime) run(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	return r.runCmd(ctx, r.command(ctx, args...), stdin, args)
}

// runCmd runs cmd, a runtime command with subcommand and arguments args,
// as run does.
func (r *Runtime) runCmd(ctx context.Context, cmd *exec.Cmd, stdin io.Reader, args []string) ([]byte, error) {
	start := time.Now()
	// Output goes to unlinked temp files, not pipes: runsc leaves children
	// (gofer, sandbox) holding whatever the command inherited, and a pipe
	// would then never reach EOF.
	stdout, err := scratchFile()
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	stderrF, err := scratchFile()
	if err != nil {
		return nil, err
	}
	defer stderrF.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderrF
	err = cmd.Run()
	r.log.Debug("runtime command", slog.String("args", strings.Join(args, " ")),
		slog.Duration(logkey.Took, time.Since(start)), slog.Any(logkey.Err, err))
	if err == nil {
		return readAll(stdout)
	}
	stderrB, _ := readAll(stderrF)
	stderr := bytes.NewBuffer(stderrB)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, fmt.Errorf("%s: %w", args[0], ctxErr)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = &runc.ExitError{Status: ee.ExitCode()}
	}
	return nil, translate(err, stderr.String())
}

// scratchFile is an unlinked temp file for a command's output.
func scratchFile() (*os.File, error) {
	f, err := os.CreateTemp("", "crisp-runtime-out-")
	if err != nil {
		return nil, fmt.Errorf("runtime output file: %w", err)
	}
	os.Remove(f.Name())
	return f, nil
}

// readAll reads a scratch file from its start.
func readAll(f *os.File) ([]byte, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

func envWithout(env []string, names ...string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// Start starts a created container's process. It returns an error wrapping
// ErrNotFound or ErrNotRunning (the container has stopped). A runsc
// sub-container is started by its monitor, which owns the container's
// stdio (see RunMonitor): Start asks it over <bundle>/monitor.sock. Under
// NetworkSandbox, `runsc start` of a pod's sandbox, which hands the pod's
// interfaces to gVisor's netstack, runs through the netns shim.
func (r *Runtime) Start(ctx context.Context, id string) error {
	shimNetNS := ""
	if r.isRunsc() {
		files := r.files.Container(id)
		// If state fails, start will fail too, and say why as before.
		st, err := r.State(ctx, id)
		if err == nil && isSubcontainer(files) {
			// Asking its monitor twice (kubelet's retry of a start that a
			// crash of crispd cut off) would start it twice.
			if st.Status != "created" {
				return fmt.Errorf("start %s: it is %s, not created: %w", id, st.Status, ErrNotRunning)
			}
			if err := startMonitored(ctx, files); err != nil {
				return fmt.Errorf("start %s: %w", id, err)
			}
			return nil
		}
		if err == nil {
			shimNetNS = r.shimNetNS(files)
		}
	}
	args := []string{"start", id}
	if _, err := r.runCmd(ctx, r.shimmedCommand(ctx, shimNetNS, args...), nil, args); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	return nil
}

// Kill sends sig to the container's init, or with all to every process in
// it. It returns an error wrapping ErrNotFound, or ErrNotRunning when the
// container has already stopped.
func (r *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	args = append(args, id, strconv.Itoa(int(sig)))
	if _, err := r.run(ctx, nil, args...); err != nil {
		return fmt.Errorf("kill %s with %v: %w", id, sig, err)
	}
	return nil
}

// Delete removes the container from the runtime; with force it kills a
// running container first. It returns an error wrapping ErrNotFound for an
// unknown id, also with force (runc alone would report success). runsc can
// take over a second here, so give ctx a generous deadline (10 s or more).
func (r *Runtime) Delete(ctx context.Context, id string, force bool) error {
	args := []string{"delete"}
	if force {
		// delete --force succeeds for unknown ids: ask first, but still
		// run it to clear whatever a failed create left behind.
		_, stateErr := r.State(ctx, id)
		if errors.Is(stateErr, ErrNotFound) {
			_, _ = r.run(ctx, nil, "delete", "--force", id)
			return fmt.Errorf("delete %s: %w", id, stateErr)
		}
		args = append(args, "--force")
	}
	if _, err := r.run(ctx, nil, append(args, id)...); err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	return nil
}

// State returns the runtime's view of the container. It returns an error
// wrapping ErrNotFound for an unknown id.
func (r *Runtime) State(ctx context.Context, id string) (State, error) {
	out, err := r.run(ctx, nil, "state", id)
	if err != nil {
		return State{}, fmt.Errorf("state of %s: %w", id, err)
	}
	var c runc.Container
	if err := json.Unmarshal(out, &c); err != nil {
		return State{}, fmt.Errorf("state of %s: parse %q: %w", id, out, err)
	}
	return fromContainer(&c), nil
}

// List returns every container under the handler's root. A missing root
// directory yields an empty list.
func (r *Runtime) List(ctx context.Context) ([]State, error) {
	if _, err := os.Stat(r.h.Root); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	// runc list fails when a container is deleted while it lists; a
	// moment later the list is whole again.
	var out []byte
	var err error
	for try := 0; try < 3; try++ {
		if out, err = r.run(ctx, nil, "list", "--format=json"); err == nil || !strings.Contains(err.Error(), "no such file or directory") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	var cs []*runc.Container
	if err := json.Unmarshal(out, &cs); err != nil {
		return nil, fmt.Errorf("list: parse %q: %w", out, err)
	}
	states := make([]State, 0, len(cs))
	for _, c := range cs {
		if c != nil {
			states = append(states, fromContainer(c))
		}
	}
	return states, nil
}

func fromContainer(c *runc.Container) State {
	s := State{ID: c.ID, Status: c.Status, PID: c.Pid, Bundle: c.Bundle, Created: c.Created}
	if s.PID < 0 {
		s.PID = 0
	}
	return s
}
