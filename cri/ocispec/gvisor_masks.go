package ocispec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// gVisor does not read linux.maskedPaths or linux.readonlyPaths: its
// sentry serves /proc and /sys itself, with nothing of the host's to hide,
// and it leaves the rest of the container's tree as it is. So a path
// masked or made read-only elsewhere in the tree (a kubelet or user
// setting) would silently stay visible and writable. For runsc, crisp
// turns such paths into mounts that gVisor does apply, as runc would mask
// them: a directory under an empty read-only tmpfs, a file under
// /dev/null, and a read-only path bound read-only over itself.

// gvisorPathMounts returns those mounts for the masked and read-only
// paths outside /proc and /sys that exist in the container's rootfs
// (runc skips missing ones too). Paths are resolved inside the rootfs, so
// a symlink in the image cannot point a bind mount at the host.
func gvisorPathMounts(in *ContainerInput, masked, readonly []string) ([]specs.Mount, error) {
	var out []specs.Mount
	// Read-only paths first, then masks, as runc applies them: a masked
	// path beneath a read-only one stays masked.
	for _, p := range readonly {
		src, _, ok, err := inRootfs(in, p)
		if err != nil {
			return nil, fmt.Errorf("read-only path %s: %w", p, err)
		}
		if !ok {
			continue
		}
		out = append(out, specs.Mount{Destination: p, Type: "bind", Source: src, Options: []string{"rbind", "ro"}})
	}
	for _, p := range masked {
		_, info, ok, err := inRootfs(in, p)
		if err != nil {
			return nil, fmt.Errorf("masked path %s: %w", p, err)
		}
		if !ok {
			continue
		}
		if info.IsDir() {
			out = append(out, specs.Mount{Destination: p, Type: "tmpfs", Source: "tmpfs",
				Options: []string{"ro", "nosuid", "nodev", "noexec", "size=0", "mode=0555"}})
		} else {
			out = append(out, specs.Mount{Destination: p, Type: "bind", Source: "/dev/null", Options: []string{"bind", "ro"}})
		}
	}
	return out, nil
}

// inRootfs resolves p inside the container's rootfs, symlinks included
// (an absolute link means the rootfs's own path, as it will inside the
// container), and stats what it names. ok is false for a path gVisor
// serves itself (/proc, /sys) or one that does not exist.
func inRootfs(in *ContainerInput, p string) (string, fs.FileInfo, bool, error) {
	p = path.Clean(p)
	for _, own := range []string{"/proc", "/sys"} {
		if p == own || strings.HasPrefix(p, own+"/") {
			return "", nil, false, nil
		}
	}
	if p == "/" {
		return "", nil, false, fmt.Errorf("the root cannot be masked or made read-only: %w", ErrInvalid)
	}
	host, err := securejoin.SecureJoin(in.RootfsPath, p)
	if err != nil {
		return "", nil, false, err
	}
	info, err := os.Lstat(host)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil, false, nil
	}
	if err != nil {
		return "", nil, false, err
	}
	return host, info, true, nil
}
