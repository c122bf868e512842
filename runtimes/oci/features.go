package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
// not answer has none; the error says why, for a log line.
func (r *Runtime) ProbeFeatures(ctx context.Context) (Features, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := r.run(ctx, nil, "features")
	if err != nil {
		return Features{}, fmt.Errorf("%s features: %w", r.h.Name, err)
	}
	return parseFeatures(out, kernelHasMountSetattr())
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
