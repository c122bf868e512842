package network

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// NewNetNS creates a network namespace for pod id, brings its loopback
// interface up (so 127.0.0.1 and ::1 work without a CNI loopback plugin),
// and pins it by bind-mounting it on <NetNSDir>/<id>. It returns that path,
// which is what CNI and the OCI spec of the pod's containers take.
//
// The namespace is made on a locked OS thread that is thrown away afterwards
// (Go ends a thread whose goroutine exits while locked), so no other
// goroutine ever runs in it. The error wraps fs.ErrExist when a pin for id
// already exists. On failure nothing is left behind. Safe for concurrent use.
func (m *Manager) NewNetNS(id string) (path string, err error) {
	if err := checkID(id); err != nil {
		return "", err
	}
	start := time.Now()
	if err := os.MkdirAll(m.netnsDir, 0o755); err != nil {
		return "", fmt.Errorf("new netns %s: %w", id, err)
	}
	path = filepath.Join(m.netnsDir, id)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return "", fmt.Errorf("new netns %s: %w", id, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("new netns %s: %w", id, err)
	}

	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread dies with this goroutine, taking its
		// changed network namespace with it.
		runtime.LockOSThread()
		errc <- pinNewNetNS(path)
	}()
	if err := <-errc; err != nil {
		_ = unix.Unmount(path, unix.MNT_DETACH)
		_ = os.Remove(path)
		return "", fmt.Errorf("new netns %s: %w", id, err)
	}
	m.log.Debug("netns pinned", slog.String(logkey.Pod, id), slog.Duration(logkey.Took, time.Since(start)))
	return path, nil
}

// pinNewNetNS moves the calling (locked) thread into a new network
// namespace, sets lo up in it and bind-mounts it on path.
func pinNewNetNS(path string) error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if err := loopbackUp(); err != nil {
		return err
	}
	src := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
	if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount %s: %w", src, err)
	}
	return nil
}

// loopbackUp sets IFF_UP on lo in the calling thread's network namespace;
// the kernel then adds 127.0.0.1/8 and ::1 itself.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: set flags: %w", err)
	}
	return nil
}

// RemoveNetNS unpins a namespace made by NewNetNS: a lazy unmount
// (MNT_DETACH, so a container still inside keeps its namespace until it
// exits) and removal of the pin file. A path that is not mounted or does not
// exist is not an error, so RemoveNetNS is idempotent and also clears a pin
// file left by a crash between create and mount. It refuses paths outside
// NetNSDir, so a bad path from elsewhere can never unmount something else.
// Safe for concurrent use.
func (m *Manager) RemoveNetNS(path string) error {
	if filepath.Dir(filepath.Clean(path)) != m.netnsDir {
		return fmt.Errorf("remove netns %s: not a pin in %s", path, m.netnsDir)
	}
	err := unix.Unmount(path, unix.MNT_DETACH)
	// EINVAL: exists but is not a mount point; ENOENT: already gone.
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove netns %s: unmount: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	m.log.Debug("netns removed", slog.String("path", path))
	return nil
}

// Pins lists the pins in NetNSDir as pod id → path, for the reconciler to
// compare with its records. A missing directory holds no pins. The list may
// include a pin file whose mount a crash interrupted; RemoveNetNS clears it.
// Safe for concurrent use.
func (m *Manager) Pins() (map[string]string, error) {
	entries, err := os.ReadDir(m.netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list netns pins: %w", err)
	}
	out := make(map[string]string, len(entries))
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		out[e.Name()] = filepath.Join(m.netnsDir, e.Name())
	}
	return out, nil
}

// checkID accepts ids that are safe as a single file name.
func checkID(id string) error {
	if id == "" || id == "." || id == ".." || len(id) > 255 || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("invalid pod id %q", id)
	}
	return nil
}

// isStalePin reports whether path is a file that holds no namespace (a pin
// whose bind mount is gone). A missing path is not one: plugins accept it.
func isStalePin(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type != unix.NSFS_MAGIC
}
