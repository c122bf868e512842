package pod

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// SetSysctls writes a pod's namespaced sysctls (dotted names, validated by
// the caller: net.* and the IPC ones) inside the pod's pinned network and
// IPC namespaces. /proc/sys answers for the namespaces of the thread that
// opens it, so the writes run on a thread of their own that enters them
// and is thrown away afterwards.
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
	for name, value := range sysctls {
		path := "/proc/sys/" + sysctlPath(name)
		if err := os.WriteFile(path, []byte(value), 0); err != nil {
			return fmt.Errorf("set sysctl %s=%s: %w", name, value, err)
		}
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

// sysctlPath turns a dotted sysctl name into its /proc/sys path: dots
// become slashes and slashes (a VLAN interface's dot) become dots.
func sysctlPath(name string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, name)
}
