// Package ocispec turns CRI container and pod configs into OCI runtime specs
// (runtime-spec's specs.Spec) for runc and runsc.
//
// It is pure. ForContainer reads nothing but the image's /etc/passwd and
// /etc/group (through ContainerInput.Rootfs), a Localhost seccomp profile
// (through ReadFile) and the CRI devices (through StatDevice); tests inject
// all three. hostinfo.go holds the few helpers that read the node (host
// devices, the daemon's capabilities) for callers to pass in.
//
// It imports cri-api, runtime-spec, image-spec and moby's seccomp profiles,
// and from crisp only db/record, which owns the container record a spec
// carries: no gRPC, no runtimes.
package ocispec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ErrInvalid marks a config that cannot become a spec. Every validation
// error wraps it and names the offending field; callers map it to
// InvalidArgument.
var ErrInvalid = errors.New("invalid config")

// ErrUnsupported marks a valid request for a feature crisp does not have
// yet (image volumes). It maps to Unimplemented, the code CRI clients such
// as critest read as "this runtime does not do that".
var ErrUnsupported = errors.New("not supported by crisp yet")

// Runtime types a Sandbox may name.
const (
	RuntimeRunc  = "runc"
	RuntimeRunsc = "runsc"
)

// Sandbox is what a container's spec needs to know of its pod.
type Sandbox struct {
	ID          string // CRI pod sandbox id
	Handler     string // runtime handler name (informational; RuntimeType decides)
	RuntimeType string // RuntimeRunc or RuntimeRunsc
	InfraID     string // infra container id; "" when the pod has none
	InfraPID    int    // infra pid, for joining its namespaces; 0 when none
	NetNSPath   string // pinned network namespace; "" with a host-network pod
	IPCNSPath   string // pinned IPC namespace of a pod without infra; "" = infra's or new
	UTSNSPath   string // pinned UTS namespace of a pod without infra; "" = infra's or new
	Hostname    string // "" = Config.Hostname

	// Files bind-mounted at /etc/resolv.conf, /etc/hosts and /etc/hostname;
	// "" skips the mount.
	ResolvConf, Hosts, HostnameFile string

	ShmPath      string // pod /dev/shm, bind-mounted; "" = a private tmpfs
	CgroupParent string // "" = Config.Linux.CgroupParent; cgroupfs style, e.g. /kubepods/besteffort/pod<uid>
	Privileged   bool   // the pod may run privileged containers
	Config       *runtimeapi.PodSandboxConfig
}

// ContainerInput is everything ForContainer turns into a spec.
type ContainerInput struct {
	ID, Name   string // crisp's container id and name
	Config     *runtimeapi.ContainerConfig
	Sandbox    Sandbox
	Image      *imgspecv1.Image // Env, Entrypoint, Cmd, WorkingDir, User; nil = none
	ImageRef   string           // resolved image id, kept in the container's record
	RootfsPath string           // mounted rootfs (overlay merged dir), absolute
	LogPath    string           // kept in the container's record

	// Rootfs serves etc/passwd and etc/group for user resolution. nil opens
	// RootfsPath with os.OpenRoot, so symlinks cannot leave the rootfs.
	Rootfs fs.FS

	// SeccompProfileRoot is where relative Localhost seccomp profiles live
	// (kubelet's seccomp dir).
	SeccompProfileRoot string

	// ClampOOMScoreAdj raises a negative oom_score_adj to 0, for nodes where
	// crispd lacks CAP_SYS_RESOURCE and runc would fail to lower it.
	ClampOOMScoreAdj bool

	// AppArmorEnabled allows Localhost AppArmor profiles; without it they
	// are refused and RuntimeDefault means no profile.
	AppArmorEnabled bool

	// Annotations are crisp's own, added last: they win over CRI ones.
	Annotations map[string]string

	// Passthrough says which pod and container annotations reach the
	// spec; none when empty.
	Passthrough Passthrough

	// HostDevices are given to privileged containers (see HostDevices).
	HostDevices []specs.LinuxDevice

	// CgroupNamespace gives unprivileged containers a private cgroup
	// namespace; set it where the kernel has them (HasCgroupNamespace).
	CgroupNamespace bool
	// Missing are the cgroup controllers the host lacks: their limits are
	// dropped rather than failing the container (see MissingControllers).
	Missing MissingControllers

	// ImageVolumes maps the index of each mount with an image (an image
	// volume) to the directory to bind: the mounted image, at its sub path.
	ImageVolumes map[int]string

	// PrivilegedWithoutHostDevices gives privileged containers the default
	// devices and device rules instead of the host's (a handler option).
	PrivilegedWithoutHostDevices bool

	// HostCapabilities are the capabilities crispd holds (see
	// CurrentCapabilities): what privileged and "add ALL" grant. nil = every
	// capability ocispec knows.
	HostCapabilities []string

	// TargetPID is the pid of the container that namespace_options.target_id
	// names, for a TARGET pid namespace; the caller resolves it in the pod.
	TargetPID int

	// StatDevice describes a host device node for CRI devices; nil =
	// DeviceFromPath.
	StatDevice func(path string) (specs.LinuxDevice, error)

	// ReadFile reads Localhost seccomp profiles; nil = os.ReadFile.
	ReadFile func(path string) ([]byte, error)
}

// ForContainer builds the OCI spec of a CRI container. Errors wrap
// ErrInvalid when the config is at fault, and name the container. It is
// safe for concurrent use; it reads only what ContainerInput points at.
func ForContainer(in ContainerInput) (*specs.Spec, error) {
	s, err := forContainer(&in)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", in.displayName(), err)
	}
	return s, nil
}

func (in *ContainerInput) displayName() string {
	if n := in.Config.GetMetadata().GetName(); n != "" {
		return n
	}
	if in.Name != "" {
		return in.Name
	}
	return in.ID
}

func forContainer(in *ContainerInput) (*specs.Spec, error) {
	cfg := in.Config
	if cfg == nil {
		return nil, fmt.Errorf("config is missing: %w", ErrInvalid)
	}
	if err := checkID("container id", in.ID); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(in.RootfsPath) {
		return nil, fmt.Errorf("rootfs path %q is not absolute: %w", in.RootfsPath, ErrInvalid)
	}
	if len(cfg.CDIDevices) > 0 {
		return nil, fmt.Errorf("CDI_devices are not supported: %w", ErrInvalid)
	}
	sc := cfg.GetLinux().GetSecurityContext()
	privileged := sc.GetPrivileged()
	if err := CheckContainerInPod(cfg, in.Sandbox); err != nil {
		return nil, err
	}
	if in.Rootfs == nil {
		root, err := os.OpenRoot(in.RootfsPath)
		if err != nil {
			return nil, fmt.Errorf("open rootfs: %w", err)
		}
		defer root.Close()
		in.Rootfs = root.FS()
	}

	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: in.RootfsPath, Readonly: sc.GetReadonlyRootfs()},
		Linux:   &specs.Linux{},
	}
	var err error
	if s.Process, err = containerProcess(in); err != nil {
		return nil, err
	}
	hostUTS := false
	if s.Linux.Namespaces, hostUTS, err = containerNamespaces(in); err != nil {
		return nil, err
	}
	if !hostUTS {
		s.Hostname = in.Sandbox.hostname()
	}
	if s.Process.Capabilities, err = capabilities(sc.GetCapabilities(), privileged, in.HostCapabilities); err != nil {
		return nil, err
	}
	if s.Mounts, s.Linux.RootfsPropagation, err = containerMounts(in, privileged); err != nil {
		return nil, err
	}
	if s.Linux.Resources, s.Process.OOMScoreAdj, err = resources(cfg.GetLinux().GetResources(), in.ClampOOMScoreAdj); err != nil {
		return nil, err
	}
	in.Missing.drop(s.Linux.Resources)
	if s.Linux.Devices, s.Linux.Resources.Devices, err = devices(in, privileged); err != nil {
		return nil, err
	}
	if !privileged {
		if s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, err = maskedPaths(sc); err != nil {
			return nil, err
		}
		if in.Sandbox.RuntimeType == RuntimeRunsc {
			ms, err := gvisorPathMounts(in, s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
			if err != nil {
				return nil, err
			}
			s.Mounts = append(s.Mounts, ms...)
		}
	}
	// After the capabilities: the default profile allows some syscalls only
	// to holders of the matching capability.
	if s.Linux.Seccomp, err = seccompFor(in, s, privileged); err != nil {
		return nil, err
	}
	if s.Process.ApparmorProfile, err = apparmorFor(sc, in.AppArmorEnabled); err != nil {
		return nil, err
	}
	if s.Linux.CgroupsPath, err = cgroupsPath(in.Sandbox.cgroupParent(), in.ID); err != nil {
		return nil, err
	}
	if s.Annotations, err = containerAnnotations(in); err != nil {
		return nil, err
	}
	return s, nil
}

var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// checkID refuses ids that would not make a single path element.
func checkID(what, id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("%s %q is not a valid id: %w", what, id, ErrInvalid)
	}
	return nil
}

func (sb *Sandbox) privileged() bool {
	return sb.Privileged || sb.Config.GetLinux().GetSecurityContext().GetPrivileged()
}

func (sb *Sandbox) hostname() string {
	if sb.Hostname != "" {
		return sb.Hostname
	}
	return sb.Config.GetHostname()
}

func (sb *Sandbox) cgroupParent() string {
	if sb.CgroupParent != "" {
		return sb.CgroupParent
	}
	return sb.Config.GetLinux().GetCgroupParent()
}

// cgroupsPath is the container's cgroup under the pod's parent, cgroupfs
// style: crisp has no systemd driver.
func cgroupsPath(parent, id string) (string, error) {
	if parent == "" {
		return "/crisp/" + id, nil
	}
	if !path.IsAbs(parent) || strings.HasSuffix(parent, ".slice") {
		return "", fmt.Errorf("cgroup_parent %q is not an absolute cgroupfs path (crisp has no systemd cgroup driver): %w", parent, ErrInvalid)
	}
	return path.Join(path.Clean(parent), "crisp-"+id), nil
}

// CgroupsPath is the cgroup crisp gives object id (a container, or a pod's
// infra process) under a pod's cgroup_parent.
func CgroupsPath(parent, id string) (string, error) { return cgroupsPath(parent, id) }

// imageVolumes is never nil for a container being made: a mount with an
// image and no directory is then an error, not a check.
func (in *ContainerInput) imageVolumes() map[int]string {
	if in.ImageVolumes == nil {
		return map[int]string{}
	}
	return in.ImageVolumes
}
