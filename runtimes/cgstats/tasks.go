package cgstats

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// readTasks counts the processes listed in the cgroup.procs of dir and
// of every cgroup beneath it (a pod's cgroup holds none itself, its
// containers' do), and their open file descriptors and sockets, as
// cAdvisor's container_processes, _file_descriptors and _sockets do.
// Processes and cgroups that go away during the walk are skipped.
func (r *Reader) readTasks(dir string) (*Tasks, error) {
	t := &Tasks{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		b, err := readFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return err
		}
		for _, pid := range bytes.Fields(b) {
			t.Processes++
			fds, sockets := r.openFiles(string(pid))
			t.FileDescriptors += fds
			t.Sockets += sockets
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// openFiles counts the open file descriptors of process pid and those
// that are sockets; a process that has exited has none.
func (r *Reader) openFiles(pid string) (fds, sockets uint64) {
	dir := filepath.Join(r.proc, pid, "fd")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0
	}
	for _, e := range entries {
		fds++
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(target, "socket:") {
			sockets++
		}
	}
	return fds, sockets
}
