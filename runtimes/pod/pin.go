package pod

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/crisp-cri/crisp/runtimes/host"
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

// Pins are the mount points Create may have made in a pod's dir: its
// /dev/shm and its pinned IPC and UTS namespaces.
var Pins = []string{"shm", "ipcns", "utsns"}

// Unpin unmounts pod id's pins and removes them, leaving its record and
// files: what a reboot leaves of a pod whose run dir survived.
func Unpin(root, id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("pod id %q is not 64 hex characters", id)
	}
	var errs []error
	for _, m := range Pins {
		p := filepath.Join(Dir(root, id), m)
		if err := host.Unmount(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
