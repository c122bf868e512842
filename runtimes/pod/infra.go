package pod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crisp-cri/crisp/runtimes/host"
)

// An infra process is PID 1 of a runc pod whose containers share a PID
// namespace. crisp starts it itself, without an OCI runtime, monitor or
// rootfs: `crispd pause` in a new PID and mount namespace, joined to the
// pod's pinned network, IPC and UTS namespaces through nsenter. It pivots
// into an empty read-only tmpfs and drops to nobody with no capabilities
// (see crispd pause --isolate). Its pid and start time are kept in the pod
// dir, so a restarted crispd finds it and never mistakes a recycled pid
// for it. Under runsc the pod's gVisor sandbox is its infra instead.

var (
	// ErrNoInfra: the pod has no infra process.
	ErrNoInfra = errors.New("no infra process")
	// ErrInfraExited: the pod's infra process has exited.
	ErrInfraExited = errors.New("infra process has exited")
)

const (
	infraFile = "infra"      // "<pid> <start time>"
	infraRoot = "infra-root" // the empty dir the infra pivots into
	infraLog  = "infra.log"  // what nsenter or the infra printed
)

// InfraOptions says how to start an infra process.
type InfraOptions struct {
	Exe     string // crispd, run as `crispd pause --isolate <dir>`
	NSEnter string // nsenter(1)
	NetNS   string // pinned namespaces to join; "" = stay in the host's
	IPCNS   string
	UTSNS   string
	// Cgroup is where the process goes (cgroupfs path; "" = stay), moved
	// by Place and removed by StopInfra.
	Cgroup string
	Place  func(pid int, cgroup string) error
}

// Infra is a running infra process.
type Infra struct {
	PID    int
	Start  uint64 // start time in clock ticks after boot (/proc/<pid>/stat)
	Cgroup string // "" = none of its own
}

// StartInfra starts pod id's infra process and records it in the pod dir.
// The process outlives crispd. On failure nothing is left running.
func StartInfra(root, id string, o InfraOptions) (Infra, error) {
	dir := Dir(root, id)
	if err := os.MkdirAll(filepath.Join(dir, infraRoot), 0o755); err != nil {
		return Infra{}, fmt.Errorf("infra of pod %s: %w", id, err)
	}
	args := []string{}
	for flag, ns := range map[string]string{"--net=": o.NetNS, "--ipc=": o.IPCNS, "--uts=": o.UTSNS} {
		if ns != "" {
			args = append(args, flag+ns)
		}
	}
	hostMnt, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return Infra{}, fmt.Errorf("infra of pod %s: %w", id, err)
	}
	args = append(args, "--", o.Exe, "pause", "--isolate", filepath.Join(dir, infraRoot), "--host-mnt-ns", hostMnt, "--ready-fd", "3")
	logf, err := os.OpenFile(filepath.Join(dir, infraLog), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return Infra{}, fmt.Errorf("infra of pod %s: %w", id, err)
	}
	defer logf.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return Infra{}, fmt.Errorf("infra of pod %s: %w", id, err)
	}
	defer readyR.Close()
	cmd := exec.Command(o.NSEnter, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{readyW} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setsid:     true, // not in crispd's process group: it outlives crispd
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
	}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return Infra{}, fmt.Errorf("start infra of pod %s: %w", id, err)
	}
	// Reap it if it dies while this crispd runs; after a restart, init does.
	go func() { _ = cmd.Wait() }()
	inf := Infra{PID: cmd.Process.Pid, Start: host.ProcStart(cmd.Process.Pid), Cgroup: o.Cgroup}
	fail := func(err error) (Infra, error) {
		_ = cmd.Process.Kill()
		return Infra{}, fmt.Errorf("start infra of pod %s: %w", id, err)
	}
	// Recorded at once, before the cgroup exists, so that whoever finds the
	// pod later (StopInfra, the reconciler) can undo both.
	if err := writeFileAtomic(filepath.Join(dir, infraFile), []byte(inf.record())); err != nil {
		return fail(err)
	}
	// It writes one byte once it has joined the namespaces and isolated
	// itself; EOF means it failed, and said why in its log.
	_ = readyR.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := readyR.Read(make([]byte, 1)); err != nil {
		msg, _ := os.ReadFile(filepath.Join(dir, infraLog))
		return fail(fmt.Errorf("it did not come up (%v): %s", err, strings.TrimSpace(string(msg))))
	}
	if o.Place != nil && o.Cgroup != "" {
		if err := o.Place(inf.PID, o.Cgroup); err != nil {
			return fail(err)
		}
	}
	return inf, nil
}

// record is the infra file's content: "<pid> <start time> [<cgroup>]".
func (i Infra) record() string {
	return strings.TrimSpace(fmt.Sprintf("%d %d %s", i.PID, i.Start, i.Cgroup)) + "\n"
}

// LookupInfra returns pod id's running infra process, or an error wrapping
// ErrNoInfra when it has none, ErrInfraExited when it has exited.
func LookupInfra(root, id string) (Infra, error) {
	b, err := os.ReadFile(filepath.Join(Dir(root, id), infraFile))
	if errors.Is(err, os.ErrNotExist) {
		return Infra{}, fmt.Errorf("pod %s: %w", id, ErrNoInfra)
	}
	if err != nil {
		return Infra{}, err
	}
	inf, err := parseInfra(string(b))
	if err != nil {
		return Infra{}, fmt.Errorf("pod %s: %w", id, err)
	}
	if !inf.Alive() {
		return inf, fmt.Errorf("pod %s: process %d: %w", id, inf.PID, ErrInfraExited)
	}
	return inf, nil
}

func parseInfra(s string) (Infra, error) {
	f := strings.Fields(s)
	var inf Infra
	var err1, err2 error
	if len(f) >= 2 {
		inf.PID, err1 = strconv.Atoi(f[0])
		inf.Start, err2 = strconv.ParseUint(f[1], 10, 64)
	}
	if len(f) < 2 || len(f) > 3 || err1 != nil || err2 != nil {
		return Infra{}, fmt.Errorf("bad infra record %q", s)
	}
	if len(f) == 3 {
		inf.Cgroup = f[2]
	}
	return inf, nil
}

// Alive reports whether the infra process still runs: its pid exists, has
// the recorded start time and is not a zombie.
func (i Infra) Alive() bool {
	st, state := host.ProcStat(i.PID)
	return st != 0 && st == i.Start && state != "Z" && state != "X"
}

// StopInfra kills pod id's infra process (and with it every process of the
// pod's PID namespace), waits until it is gone and removes its cgroup. A
// pod without a running infra is no error.
func StopInfra(ctx context.Context, root, id string) error {
	inf, err := LookupInfra(root, id)
	switch {
	case errors.Is(err, ErrNoInfra):
		return nil
	case errors.Is(err, ErrInfraExited):
		if inf.Cgroup != "" {
			removeCgroup(inf.Cgroup)
		}
		return nil
	case err != nil:
		return err
	}
	if err := Kill(ctx, inf); err != nil {
		return fmt.Errorf("stop infra of pod %s: %w", id, err)
	}
	if inf.Cgroup != "" {
		removeCgroup(inf.Cgroup)
	}
	return nil
}

// Kill sends SIGKILL to an infra process and waits until it has exited.
func Kill(ctx context.Context, inf Infra) error {
	// A pidfd pins the process: the signal cannot reach a recycled pid.
	fd, err := unix.PidfdOpen(inf.PID, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return err
	}
	defer unix.Close(fd)
	if !inf.Alive() { // the pid was recycled between lookup and open
		return nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill %d: %w", inf.PID, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The pidfd polls readable once the process has exited.
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 100)
		if n > 0 || (err != nil && !errors.Is(err, unix.EINTR)) {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("process %d still runs after SIGKILL", inf.PID)
		}
	}
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// InfraProcesses finds the infra processes of pods under root by their
// command line (crispd pause --isolate <root>/<pod id>/infra-root), whether
// or not their pod dir still records them: a crash can leave one behind.
func InfraProcesses(root string) (map[string]Infra, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	prefix := filepath.Clean(root) + string(filepath.Separator)
	out := map[string]Infra{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if id, ok := infraOf(pid, prefix); ok {
			if start, state := host.ProcStat(pid); start != 0 && state != "Z" {
				out[id] = Infra{PID: pid, Start: start}
			}
		}
	}
	return out, nil
}

// infraOf tells whether pid is the infra process of a pod under prefix.
func infraOf(pid int, prefix string) (string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return "", false
	}
	args := strings.Split(string(b), "\x00")
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--isolate" && strings.HasPrefix(args[i+1], prefix) && filepath.Base(args[i+1]) == infraRoot {
			return filepath.Base(filepath.Dir(args[i+1])), true
		}
	}
	return "", false
}

// KillStray kills pod id's infra process found by InfraProcesses, when its
// pod dir (and record) is gone, and removes the cgroup it ran in.
func KillStray(ctx context.Context, root, id string) error {
	infras, err := InfraProcesses(root)
	if err != nil {
		return err
	}
	inf, ok := infras[id]
	if !ok {
		return nil
	}
	cgroup := host.ProcessCgroup(inf.PID)
	if err := Kill(ctx, inf); err != nil {
		return fmt.Errorf("infra of pod %s: %w", id, err)
	}
	if cgroup != "" && cgroup != "/" {
		removeCgroup(cgroup)
	}
	return nil
}

// removeCgroup removes an infra's cgroup. A failure is not the caller's:
// the cgroup stays busy until the kernel has reaped the pod's processes,
// and the reconciler's sweep of crisp's cgroups takes what is left.
func removeCgroup(path string) { _ = host.RemoveCgroup(path) }
