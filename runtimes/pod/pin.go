package pod

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// pin creates a namespace of kind (CLONE_NEWIPC, CLONE_NEWUTS) and keeps it
// alive by bind-mounting it at path, so containers can join it by path and
// it outlives every process in it. The namespace is made on a locked OS
// thread that is then left to die with its goroutine, never reused.
func pin(path string, kind int, hostname string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return "", fmt.Errorf("create namespace pin %s: %w", path, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		if err := unix.Unshare(kind); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		if kind == unix.CLONE_NEWUTS && hostname != "" {
			if err := unix.Sethostname([]byte(hostname)); err != nil {
				errc <- fmt.Errorf("set hostname %q: %w", hostname, err)
				return
			}
		}
		name := map[int]string{unix.CLONE_NEWIPC: "ipc", unix.CLONE_NEWUTS: "uts"}[kind]
		src := fmt.Sprintf("/proc/%d/task/%d/ns/%s", os.Getpid(), unix.Gettid(), name)
		errc <- unix.Mount(src, path, "none", unix.MS_BIND, "")
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return "", fmt.Errorf("pin namespace at %s: %w", path, err)
	}
	return path, nil
}
