package oci

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// PauseOptions say how RunPause runs.
type PauseOptions struct {
	// Isolate, when set, is the dir RunPause mounts an empty read-only
	// tmpfs on and pivots into, dropping to nobody (isolateInfra). Only
	// for PID 1 of a new PID and mount namespace.
	Isolate string
	// HostMntNS is the host's mount namespace (as /proc/self/ns/mnt
	// reads), which Isolate refuses to run in.
	HostMntNS string
	// ReadyFD, when > 0, gets one byte once RunPause runs.
	ReadyFD int
}

// RunPause is a pod's infra process, the twin of RunMonitor: what a pause
// image's binary does, from crispd's own static binary (`crispd pause`),
// so that pods that need an infra process never pull an image. It holds
// the pod's namespaces open, reaps orphans (it is PID 1 when the pod
// shares a PID namespace) and returns on SIGTERM or SIGINT. It is the
// infra container of a gVisor pod and the bare infra process of a runc
// pod (see package pod).
func RunPause(o PauseOptions) error {
	isolate, hostMntNS, readyFD := o.Isolate, o.HostMntNS, o.ReadyFD
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	if isolate != "" {
		if err := isolateInfra(isolate, hostMntNS); err != nil {
			return fmt.Errorf("pause: %w", err)
		}
	}
	if readyFD > 0 {
		ready := os.NewFile(uintptr(readyFD), "ready")
		_, _ = ready.Write([]byte{1})
		ready.Close()
	}
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			return nil
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
	return nil
}

// isolateInfra shuts an infra process started by crisp (not by an OCI
// runtime) off from the host: its mount namespace is reduced to an empty
// read-only tmpfs, so neither it nor a container that shares its PID
// namespace reaches the host's files through /proc/1/root, and it drops to
// nobody without capabilities. It refuses to run in the host's mount
// namespace (named by its launcher), where making mounts private would hurt.
func isolateInfra(dir, hostMntNS string) error {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if os.Getpid() != 1 || err != nil || hostMntNS == "" || self == hostMntNS {
		return fmt.Errorf("--isolate needs a new PID and mount namespace (pid %d, mount namespace %s, host's %q)", os.Getpid(), self, hostMntNS)
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"make mounts private", func() error { return unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "") }},
		{"mount empty root", func() error {
			return unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RDONLY, "size=4k,mode=0555")
		}},
		{"enter empty root", func() error { return unix.Chdir(dir) }},
		{"pivot root", func() error { return unix.PivotRoot(".", ".") }},
		{"detach host mounts", func() error { return unix.Unmount(".", unix.MNT_DETACH) }},
		{"chdir /", func() error { return unix.Chdir("/") }},
		{"set no_new_privs", func() error { return unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }},
		// The syscall package's versions change every thread of the process.
		{"drop groups", func() error { return syscall.Setgroups(nil) }},
		{"set gid nobody", func() error { return syscall.Setresgid(nobody, nobody, nobody) }},
		{"set uid nobody", func() error { return syscall.Setresuid(nobody, nobody, nobody) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	return nil
}

// nobody is the uid and gid the infra process runs as.
const nobody = 65534
