package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go/features"
	"golang.org/x/sys/unix"
)

// Features are what a handler's runtime can do, as `<runtime> features`
// (OCI runtime features, runc ≥ 1.1) reports them, checked against the
// kernel. A runtime without the subcommand (Debian's runsc) can do none
// of them, as far as crisp can tell: kubelet is then told so, rather than
// promised what may be silently ignored.
type Features struct {
	// RecursiveReadOnly: the runtime knows the "rro" mount option and the
	// kernel has mount_setattr(2) (5.12) to apply it.
	RecursiveReadOnly bool
	// MountOptions are the mount options the runtime accepts.
	MountOptions []string
}

// HasMountOptions says whether the runtime accepts every one of opts.
func (f Features) HasMountOptions(opts ...string) bool {
	for _, o := range opts {
		if !slices.Contains(f.MountOptions, o) {
			return false
		}
	}
	return true
}

// ProbeFeatures asks r's runtime for its features. A runtime that does
// not answer has none; the error says why, for a log line. The answer is
// kept in the run dir (layout.Features) with what identifies the binary
// and the handler's global arguments; a later start in the same boot
// with the same binary reads it there instead of starting the runtime
// (a static runsc takes some 50 ms to answer, which a restart waited
// for).
func (r *Runtime) ProbeFeatures(ctx context.Context) (Features, error) {
	cache := filepath.Join(r.files.Features(), r.h.Name+".json")
	key, keyErr := r.featuresKey()
	if keyErr == nil {
		var c cachedFeatures
		if b, err := os.ReadFile(cache); err == nil && json.Unmarshal(b, &c) == nil && c.Key == key {
			return parseFeatures(c.Output, kernelHasMountSetattr())
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := r.run(ctx, nil, "features")
	if err != nil {
		return Features{}, fmt.Errorf("%s features: %w", r.h.Name, err)
	}
	f, err := parseFeatures(out, kernelHasMountSetattr())
	if err == nil && keyErr == nil {
		// Best effort: without the file the next start asks again.
		if data, merr := json.Marshal(cachedFeatures{Key: key, Output: out}); merr == nil {
			_ = writeFileAtomic(cache, data)
		}
	}
	return f, err
}

// cachedFeatures is a runtime's features output and what it was asked of.
type cachedFeatures struct {
	Key    string          `json:"key"`
	Output json.RawMessage `json:"output"`
}

// featuresKey identifies the runtime binary (device, inode, size,
// modification time: a new build or package is another file) and the
// global arguments it is run with.
func (r *Runtime) featuresKey() (string, error) {
	path, err := exec.LookPath(r.h.Path)
	if err != nil {
		return "", err
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s dev=%d ino=%d size=%d mtime=%d.%09d args=%q", path, st.Dev, st.Ino, st.Size,
		st.Mtim.Sec, st.Mtim.Nsec, r.globalArgs()), nil
}

func parseFeatures(out []byte, mountSetattr bool) (Features, error) {
	var f features.Features
	if err := json.Unmarshal(out, &f); err != nil {
		return Features{}, fmt.Errorf("decode runtime features: %w", err)
	}
	return Features{
		RecursiveReadOnly: mountSetattr && slices.Contains(f.MountOptions, "rro"),
		MountOptions:      slices.Clone(f.MountOptions),
	}, nil
}

// kernelHasMountSetattr probes mount_setattr(2) with a bad descriptor: a
// kernel that has it says EBADF, one that does not says ENOSYS.
func kernelHasMountSetattr() bool {
	err := unix.MountSetattr(-1, "", 0, &unix.MountAttr{})
	return !errors.Is(err, unix.ENOSYS)
}
