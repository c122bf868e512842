package ocispec

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// shmSize is a private /dev/shm's size, Docker's and kubelet's default.
const shmSize = "size=65536k"

// baseMounts are the kernel filesystems every container gets. /sys and
// /sys/fs/cgroup are writable only for privileged containers.
func baseMounts(privileged bool) []specs.Mount {
	sysMode := "ro"
	if privileged {
		sysMode = "rw"
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", sysMode}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", sysMode}},
	}
}

// shmMount is the pod's /dev/shm bind-mounted, or a private tmpfs.
func shmMount(shm string) specs.Mount {
	if shm == "" {
		return specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", shmSize}}
	}
	return specs.Mount{Destination: "/dev/shm", Type: "bind", Source: shm, Options: []string{"rbind", "rprivate", "nosuid", "noexec", "nodev", "rw"}}
}

// allowedMountOptions are the CRI mount_options crisp passes on.
var allowedMountOptions = []string{"noexec", "nodev", "nosuid"}

// criMounts converts the CRI mounts. It reports the rootfs propagation
// they need: a slave or shared bind only propagates if the container's
// root is slave or shared too. A mount with an image (an image volume,
// KEP-4639) binds imageVolumes[i], the mounted image's directory that
// CreateContainer made, read-only; with imageVolumes nil (a check before
// anything is made) its source is not looked at.
func criMounts(cfg *runtimeapi.ContainerConfig, privileged bool, imageVolumes map[int]string) ([]specs.Mount, string, error) {
	var out []specs.Mount
	rootProp := ""
	for i, m := range cfg.GetMounts() {
		field := fmt.Sprintf("mounts[%d]", i)
		if strings.ContainsRune(m.ContainerPath+m.HostPath+m.ImageSubPath, 0) {
			return nil, "", fmt.Errorf("%s: a path has a NUL byte: %w", field, ErrInvalid)
		}
		if !path.IsAbs(m.ContainerPath) {
			return nil, "", fmt.Errorf("%s.container_path %q is not absolute: %w", field, m.ContainerPath, ErrInvalid)
		}
		dst := path.Clean(m.ContainerPath)
		if dst == "/" {
			return nil, "", fmt.Errorf("%s.container_path is the root: %w", field, ErrInvalid)
		}
		if slices.ContainsFunc(out, func(o specs.Mount) bool { return o.Destination == dst }) {
			return nil, "", fmt.Errorf("%s.container_path %q is mounted twice: %w", field, dst, ErrInvalid)
		}
		if m.GetImage() != nil {
			mnt, err := imageVolumeMount(field, m, dst, imageVolumes, i)
			if err != nil {
				return nil, "", err
			}
			out = append(out, mnt)
			continue
		}
		if m.ImageSubPath != "" {
			return nil, "", fmt.Errorf("%s.image_sub_path is set without an image: %w", field, ErrInvalid)
		}
		if !filepath.IsAbs(m.HostPath) {
			return nil, "", fmt.Errorf("%s.host_path %q is not absolute: %w", field, m.HostPath, ErrInvalid)
		}
		if len(m.UidMappings) > 0 || len(m.GidMappings) > 0 {
			return nil, "", fmt.Errorf("%s: id-mapped mounts are not supported: %w", field, ErrInvalid)
		}
		opts := []string{"rbind"}
		switch m.Propagation {
		case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
			opts = append(opts, "rprivate")
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			opts = append(opts, "rslave")
			if rootProp == "" {
				rootProp = "rslave"
			}
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			if !privileged {
				return nil, "", fmt.Errorf("%s.propagation: bidirectional propagation needs a privileged container: %w", field, ErrInvalid)
			}
			opts = append(opts, "rshared")
			rootProp = "rshared"
		default:
			return nil, "", fmt.Errorf("%s.propagation: unknown mode %d: %w", field, m.Propagation, ErrInvalid)
		}
		if m.Readonly {
			opts = append(opts, "ro")
		} else {
			opts = append(opts, "rw")
		}
		if m.RecursiveReadOnly {
			if !m.Readonly || m.Propagation != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				return nil, "", fmt.Errorf("%s.recursive_read_only needs readonly and private propagation: %w", field, ErrInvalid)
			}
			opts = append(opts, "rro")
		}
		for j, o := range m.MountOptions {
			if !slices.Contains(allowedMountOptions, o) {
				return nil, "", fmt.Errorf("%s.mount_options[%d] %q is not one of %s: %w", field, j, o, strings.Join(allowedMountOptions, ", "), ErrInvalid)
			}
			if !slices.Contains(opts, o) {
				opts = append(opts, o)
			}
		}
		out = append(out, specs.Mount{Destination: dst, Type: "bind", Source: filepath.Clean(m.HostPath), Options: opts})
	}
	return out, rootProp, nil
}

// containerMounts is the container's mount list: the base mounts,
// /dev/shm (the pod's; the host's for a host-IPC pod; else private), the
// pod's resolv.conf, hosts and hostname, then the CRI mounts. A CRI mount
// replaces any other at the same destination. The pod files are read-only
// when the rootfs is (containerd's rule). Mounts are ordered parents first,
// so a CRI mount of /a/b is not hidden by one of /a.
func containerMounts(in *ContainerInput, privileged bool) ([]specs.Mount, string, error) {
	cri, rootProp, err := criMounts(in.Config, privileged, in.imageVolumes())
	if err != nil {
		return nil, "", err
	}
	taken := func(dst string) bool {
		return slices.ContainsFunc(cri, func(m specs.Mount) bool { return m.Destination == dst })
	}
	var out []specs.Mount
	shm := in.Sandbox.ShmPath
	if shm == "" && podNamespaces(&in.Sandbox).Ipc == runtimeapi.NamespaceMode_NODE {
		shm = "/dev/shm" // host IPC: the host's POSIX shared memory too
	}
	for _, m := range append(baseMounts(privileged), shmMount(shm)) {
		if !taken(m.Destination) {
			out = append(out, m)
		}
	}
	mode := "rw"
	if in.Config.GetLinux().GetSecurityContext().GetReadonlyRootfs() {
		mode = "ro"
	}
	sb := &in.Sandbox
	for _, f := range [][2]string{{"/etc/resolv.conf", sb.ResolvConf}, {"/etc/hosts", sb.Hosts}, {"/etc/hostname", sb.HostnameFile}} {
		if f[1] == "" || taken(f[0]) {
			continue
		}
		if !filepath.IsAbs(f[1]) {
			return nil, "", fmt.Errorf("pod file %q for %s is not absolute: %w", f[1], f[0], ErrInvalid)
		}
		out = append(out, specs.Mount{Destination: f[0], Type: "bind", Source: f[1], Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec", mode}})
	}
	out = append(out, cri...)
	slices.SortStableFunc(out, func(a, b specs.Mount) int { return depth(a.Destination) - depth(b.Destination) })
	return out, rootProp, nil
}

// depth counts a clean absolute path's elements ("/" is 0).
func depth(p string) int {
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

// imageVolumeMount binds an image volume: read-only whatever the request
// says (CRI: image mounts are read-only by definition), private, without
// devices or setuid, at the image's sub path, which CreateContainer
// resolved inside the image.
func imageVolumeMount(field string, m *runtimeapi.Mount, dst string, imageVolumes map[int]string, i int) (specs.Mount, error) {
	if m.HostPath != "" {
		return specs.Mount{}, fmt.Errorf("%s: host_path %q and an image are both set: %w", field, m.HostPath, ErrInvalid)
	}
	if err := CheckImageSubPath(field, m.ImageSubPath); err != nil {
		return specs.Mount{}, err
	}
	if m.Propagation != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
		return specs.Mount{}, fmt.Errorf("%s.propagation: an image volume is private: %w", field, ErrInvalid)
	}
	if len(m.UidMappings) > 0 || len(m.GidMappings) > 0 {
		return specs.Mount{}, fmt.Errorf("%s: id-mapped mounts are not supported: %w", field, ErrInvalid)
	}
	opts := []string{"rbind", "rprivate", "ro", "nosuid", "nodev"}
	for j, o := range m.MountOptions {
		if !slices.Contains(allowedMountOptions, o) {
			return specs.Mount{}, fmt.Errorf("%s.mount_options[%d] %q is not one of %s: %w", field, j, o, strings.Join(allowedMountOptions, ", "), ErrInvalid)
		}
		if !slices.Contains(opts, o) {
			opts = append(opts, o)
		}
	}
	src := imageVolumes[i]
	if src == "" && imageVolumes != nil {
		return specs.Mount{}, fmt.Errorf("%s: image volume %s was not mounted", field, m.GetImage().GetImage())
	}
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts}, nil
}

// CheckImageSubPath refuses an image_sub_path that is absolute or has a
// ".." element. (The path is then resolved inside the image, symlinks
// included, so nothing can lead out of it anyway; this says so early.)
func CheckImageSubPath(field, sub string) error {
	if sub == "" {
		return nil
	}
	if path.IsAbs(sub) || slices.Contains(strings.Split(sub, "/"), "..") {
		return fmt.Errorf("%s.image_sub_path %q must be relative, without '..': %w", field, sub, ErrInvalid)
	}
	return nil
}
