package pod

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrBadSysctl marks a sysctl name that does not make a path beneath
// /proc/sys.
var ErrBadSysctl = errors.New("bad sysctl name")

// SetSysctls writes a pod's namespaced sysctls (dotted names, validated by
// the caller: net.* and the IPC ones) inside the pod's pinned network and
// IPC namespaces. /proc/sys answers for the namespaces of the thread that
// opens it, so the writes run on a thread of their own that enters them
// and is thrown away afterwards.
//
// Each file is opened beneath /proc/sys with openat2, refusing "..",
// symlinks and other mounts, and never created: whatever the name, the
// write cannot land outside /proc/sys.
func SetSysctls(netns, ipcns string, sysctls map[string]string) error {
	if len(sysctls) == 0 {
		return nil
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread dies with this goroutine.
		runtime.LockOSThread()
		errc <- setSysctls(netns, ipcns, sysctls)
	}()
	return <-errc
}

func setSysctls(netns, ipcns string, sysctls map[string]string) error {
	for _, ns := range []struct {
		path string
		kind int
	}{{netns, unix.CLONE_NEWNET}, {ipcns, unix.CLONE_NEWIPC}} {
		if ns.path == "" {
			continue
		}
		if err := enter(ns.path, ns.kind); err != nil {
			return fmt.Errorf("sysctls: %w", err)
		}
	}
	// Opened after entering the namespaces: /proc/sys/net is the netns of
	// the thread that looks it up.
	root, err := openProcSys()
	if err != nil {
		return err
	}
	defer unix.Close(root)
	for name, value := range sysctls {
		if err := writeSysctl(root, name, value); err != nil {
			return fmt.Errorf("set sysctl %s=%s: %w", name, value, err)
		}
	}
	return nil
}

// openProcSys opens /proc/sys and checks that it is procfs, so that a
// bind mount over it cannot redirect the writes.
func openProcSys() (int, error) {
	fd, err := unix.Open("/proc/sys", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return -1, fmt.Errorf("open /proc/sys: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("statfs /proc/sys: %w", err)
	}
	if st.Type != unix.PROC_SUPER_MAGIC {
		unix.Close(fd)
		return -1, fmt.Errorf("/proc/sys is not procfs (magic %#x)", st.Type)
	}
	return fd, nil
}

// writeSysctl writes value to the sysctl name beneath root (/proc/sys).
func writeSysctl(root int, name, value string) error {
	rel, err := sysctlPath(name)
	if err != nil {
		return err
	}
	fd, err := unix.Openat2(root, rel, &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return fmt.Errorf("open /proc/sys/%s: %w", rel, err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(value)); err != nil {
		return fmt.Errorf("write /proc/sys/%s: %w", rel, err)
	}
	return nil
}

func enter(path string, kind int) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, kind); err != nil {
		return fmt.Errorf("enter namespace %s: %w", path, err)
	}
	return nil
}

// sysctlPath turns a dotted sysctl name into its path relative to
// /proc/sys: dots become slashes and slashes (a VLAN interface's dot)
// become dots. Every element must be a plain name: not empty, not "." or
// "..", which the swap could otherwise produce from "//".
func sysctlPath(name string) (string, error) {
	p := strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, name)
	for elem := range strings.SplitSeq(p, "/") {
		if elem == "" || elem == "." || elem == ".." || strings.ContainsRune(elem, 0) {
			return "", fmt.Errorf("%q has an empty, . or .. element: %w", name, ErrBadSysctl)
		}
	}
	return p, nil
}
