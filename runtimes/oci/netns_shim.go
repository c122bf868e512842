package oci

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/crisp-cri/crisp/runtimes/layout"
)

// The netns shim works around a check in runsc 0.0~20221219 (Debian's):
// with --network=sandbox, `runsc start` of a pod's sandbox (the root
// container), which hands the pod's interfaces to gVisor, joins the pod's
// network namespace
// and refuses to go on ("cannot run with network enabled in root network
// namespace") if /proc/sys/net/core/rmem_default exists there, taking the
// file for the mark of the host's namespace. Recent kernels (6.18 on our
// machines) have it in every network namespace, so runsc refuses every pod. The shim hides that
// directory, as seen from the pod's namespace, from runsc alone: it mounts
// an empty read-only tmpfs over it in a private mount namespace, then
// execs runsc. The pod's and the host's sysctls are untouched, and only
// that short-lived `runsc start` sees the mount: the sandbox and gofer
// already run, started by `runsc create` in the host's mount namespace.

// netCoreDir is the sysctl directory the shim hides.
const netCoreDir = "/proc/sys/net/core"

// netNSShimArgs are the shim's arguments before the runtime's own.
func netNSShimArgs(netns, runtimePath string) []string {
	return []string{"--netns=" + netns, "--runtime=" + runtimePath, "--"}
}

// shimNetNS returns the network namespace the shim must be given to start
// the container, or "" when runsc runs as is: the handler is
// not in NetworkSandbox mode or has no shim, or the spec names no network
// namespace (there is no pod namespace to take over; cri refuses such
// pods in this mode). Sub-containers never come here: they join the
// sandbox, and get crisp's monitor.
func (r *Runtime) shimNetNS(files layout.Container) string {
	if !r.Netstack() || len(r.h.NetNSShim) == 0 {
		return ""
	}
	spec, err := files.ReadSpec()
	if err != nil || spec.Linux == nil {
		return "" // runsc reports the unreadable spec itself
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path
		}
	}
	return ""
}

// ParseNetNSShimArgs splits the shim's command line (what follows
// Handler.NetNSShim) into the pod's network namespace, the runtime
// binary and the runtime's own arguments.
func ParseNetNSShimArgs(argv []string) (netns, runtimePath string, runtimeArgs []string, err error) {
	for i, a := range argv {
		switch {
		case a == "--":
			runtimeArgs = argv[i+1:]
			if netns == "" || runtimePath == "" || len(runtimeArgs) == 0 {
				return "", "", nil, fmt.Errorf("netns shim: need --netns, --runtime and the runtime's arguments after --, got %q", argv)
			}
			return netns, runtimePath, runtimeArgs, nil
		case strings.HasPrefix(a, "--netns="):
			netns = strings.TrimPrefix(a, "--netns=")
		case strings.HasPrefix(a, "--runtime="):
			runtimePath = strings.TrimPrefix(a, "--runtime=")
		default:
			return "", "", nil, fmt.Errorf("netns shim: unexpected argument %q", a)
		}
	}
	return "", "", nil, fmt.Errorf("netns shim: no -- before the runtime's arguments in %q", argv)
}

// RunNetNSShim hides /proc/sys/net/core of the network namespace netns in
// a new mount namespace, then execs the runtime with runtimeArgs (see the
// comment at the top of this file). It returns only on failure. crispd
// runs it as a hidden subcommand (Handler.NetNSShim); it is not meant to
// be run by hand.
func RunNetNSShim(netns, runtimePath string, runtimeArgs []string) error {
	// Namespaces belong to the thread until exec; this one is never
	// handed back to the Go scheduler.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("netns shim: new mount namespace: %w", err)
	}
	// Nothing mounted here may reach the host's mount namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("netns shim: make mounts private: %w", err)
	}
	if err := hideNetCore(netns); err != nil {
		return fmt.Errorf("netns shim: hide %s of %s: %w", netCoreDir, netns, err)
	}
	return fmt.Errorf("netns shim: exec %s: %w", runtimePath, unix.Exec(runtimePath, append([]string{runtimePath}, runtimeArgs...), os.Environ()))
}

// hideNetCore mounts an empty read-only tmpfs on /proc/sys/net/core as the
// network namespace netns sees it: /proc/sys/net shows the namespace of
// whoever looks, so the mount is made from inside it. The thread then
// returns to its own network namespace.
func hideNetCore(netns string) error {
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer self.Close()
	pod, err := os.Open(netns)
	if err != nil {
		return err
	}
	defer pod.Close()
	if err := unix.Setns(int(pod.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter: %w", err)
	}
	mountErr := unix.Mount("tmpfs", netCoreDir, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k,mode=0555")
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		return errors.Join(mountErr, fmt.Errorf("return to own network namespace: %w", err))
	}
	return mountErr
}
