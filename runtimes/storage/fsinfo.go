package storage

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// FsUsage is the space the store takes on its filesystem.
type FsUsage struct {
	Mountpoint string
	Bytes      uint64 // allocated bytes (st_blocks), hard links counted once
	Inodes     uint64
	At         time.Time
}

// Usage measures the graph root by walking it, as du does. It is I/O
// proportional to the store's size, so callers should not call it often.
func (s *Store) Usage(ctx context.Context) (FsUsage, error) {
	root := s.store.GraphRoot()
	u := FsUsage{Mountpoint: root, At: time.Now()}
	var rootDev uint64
	if fi, err := os.Stat(root); err == nil {
		rootDev = uint64(fi.Sys().(*syscall.Stat_t).Dev)
	}
	seen := map[uint64]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a file removed while walking is not an error
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok || seen[st.Ino] {
			return nil
		}
		if uint64(st.Dev) != rootDev {
			// A container's rootfs mount: its bytes are counted in its layers.
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		seen[st.Ino] = true
		u.Inodes++
		u.Bytes += uint64(st.Blocks) * 512
		return nil
	})
	return u, err
}
