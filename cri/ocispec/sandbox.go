package ocispec

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// infraOOMScoreAdj keeps the OOM killer off the infra process, whose
// death would take the pod's namespaces with it (CRI-O's value).
const infraOOMScoreAdj = -998

// InfraCrispd is where crispd's binary is in an infra container: its
// process is `/crispd pause`, and crisp execs other crispd helpers there
// (the port-forward bridge of a pod on gVisor's netstack).
const InfraCrispd = "/crispd"

// InfraInput is what ForSandboxInfra builds an infra container's spec from.
type InfraInput struct {
	// Sandbox is the pod. Its InfraID is the infra container's id (ID when
	// empty); InfraPID is ignored.
	Sandbox Sandbox

	// RootfsPath is an empty directory the caller made. runc creates the
	// mount points in it before making it read-only.
	RootfsPath string

	// CrispdPath is the host path of crispd, bind-mounted read-only at
	// InfraCrispd. It must be statically linked: the rootfs has no libc.
	CrispdPath string

	// Annotations are crisp's own, added last.
	Annotations map[string]string

	// Passthrough says which pod annotations reach the spec; none when
	// empty.
	Passthrough Passthrough

	// ClampOOMScoreAdj runs the infra at oom_score_adj 0 instead of -998,
	// for nodes where crispd cannot lower it.
	ClampOOMScoreAdj bool
}

// ForSandboxInfra builds the spec of a pod's infra container: "/crispd
// pause" in an empty read-only rootfs, as the pod's run_as_user/group (root
// by default), with no capabilities, no new privileges and the default
// seccomp profile. It creates the pod's PID, IPC and UTS namespaces (or
// joins the pinned IPC/UTS ones), joins the pinned network namespace, and
// applies the pod's sysctls, which must be namespaced. Errors wrap
// ErrInvalid when the pod config is at fault. It is safe for concurrent use
// and does no I/O beyond the seccomp kernel-version check.
func ForSandboxInfra(in InfraInput) (*specs.Spec, error) {
	s, err := forSandboxInfra(&in)
	if err != nil {
		name := in.Sandbox.ID
		if m := in.Sandbox.Config.GetMetadata(); m != nil {
			name = m.Namespace + "/" + m.Name
		}
		return nil, fmt.Errorf("pod %q: %w", name, err)
	}
	return s, nil
}

func forSandboxInfra(in *InfraInput) (*specs.Spec, error) {
	sb := &in.Sandbox
	id := sb.InfraID
	if id == "" {
		id = sb.ID
	}
	if err := checkID("infra container id", id); err != nil {
		return nil, err
	}
	for _, p := range [][2]string{{"rootfs path", in.RootfsPath}, {"crispd path", in.CrispdPath}} {
		if !filepath.IsAbs(p[1]) {
			return nil, fmt.Errorf("%s %q is not absolute: %w", p[0], p[1], ErrInvalid)
		}
	}
	pod := podNamespaces(sb)
	sysctls, err := podSysctls(sb.Config.GetLinux().GetSysctls(),
		pod.Network == runtimeapi.NamespaceMode_NODE, pod.Ipc == runtimeapi.NamespaceMode_NODE)
	if err != nil {
		return nil, err
	}
	user, err := infraUser(sb.Config.GetLinux().GetSecurityContext())
	if err != nil {
		return nil, err
	}
	oom := infraOOMScoreAdj
	if in.ClampOOMScoreAdj {
		oom = 0
	}
	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: in.RootfsPath, Readonly: true},
		Process: &specs.Process{
			User:            user,
			Args:            []string{InfraCrispd, "pause"},
			Env:             []string{"PATH=" + defaultPath},
			Cwd:             "/",
			Capabilities:    &specs.LinuxCapabilities{},
			NoNewPrivileges: true,
			OOMScoreAdj:     &oom,
		},
		Mounts: append(baseMounts(false), specs.Mount{
			Destination: InfraCrispd, Type: "bind", Source: in.CrispdPath,
			Options: []string{"bind", "rprivate", "ro", "nosuid", "nodev"},
		}),
		Linux: &specs.Linux{
			Sysctl:        sysctls,
			Resources:     &specs.LinuxResources{Devices: append([]specs.LinuxDeviceCgroup{denyAll}, defaultDeviceRules()...)},
			MaskedPaths:   slices.Clone(defaultMaskedPaths),
			ReadonlyPaths: slices.Clone(defaultReadonlyPaths),
		},
	}
	hostUTS := false
	if s.Linux.Namespaces, hostUTS, err = infraNamespaces(sb); err != nil {
		return nil, err
	}
	if !hostUTS {
		s.Hostname = sb.hostname()
	}
	if s.Linux.CgroupsPath, err = cgroupsPath(sb.cgroupParent(), id); err != nil {
		return nil, err
	}
	if s.Linux.Seccomp, err = seccomp.GetDefaultProfile(s); err != nil {
		return nil, fmt.Errorf("default seccomp profile: %w", err)
	}
	s.Annotations = map[string]string{}
	passAnnotations(s.Annotations, sb.Config.GetAnnotations(), in.Passthrough.Pod)
	podAnnotations(s.Annotations, sb, ContainerTypeSandbox)
	maps.Copy(s.Annotations, in.Annotations)
	return s, nil
}

// infraUser is the pod's run_as_user and run_as_group, numeric only: the
// infra rootfs has no /etc/passwd.
func infraUser(sc *runtimeapi.LinuxSandboxSecurityContext) (specs.User, error) {
	var u specs.User
	var err error
	if v := sc.GetRunAsUser(); v != nil {
		if u.UID, err = checkID64("security_context.run_as_user", v.Value); err != nil {
			return u, err
		}
	}
	if v := sc.GetRunAsGroup(); v != nil {
		if sc.GetRunAsUser() == nil {
			return u, fmt.Errorf("security_context.run_as_group needs run_as_user: %w", ErrInvalid)
		}
		if u.GID, err = checkID64("security_context.run_as_group", v.Value); err != nil {
			return u, err
		}
	}
	return u, nil
}

// sysctlNameFormat is Kubernetes' rule for a sysctl name: segments of
// lower-case letters, digits, '-' and '_' (starting and ending with a
// letter or digit), separated by dots or slashes.
var sysctlNameFormat = regexp.MustCompile(`^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$`)

// sysctlMaxName and sysctlMaxValue bound a sysctl: Kubernetes' name limit,
// and a page, which is all /proc/sys takes in one write.
const (
	sysctlMaxName  = 253
	sysctlMaxValue = 4096
)

// podSysctls validates and normalises the pod's sysctls. Names follow
// Kubernetes' rule and may use "/" separators (net/ipv4/ip_forward). Only
// namespaced sysctls are allowed (Kubernetes' list), and only in a
// namespace the pod owns: net.* needs the pod's own network namespace;
// kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* its own IPC
// namespace. Values are one line.
func podSysctls(in map[string]string, hostNet, hostIPC bool) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(in))
	for _, k := range slices.Sorted(maps.Keys(in)) {
		v := in[k]
		field := fmt.Sprintf("linux.sysctls[%q]", k)
		if len(k) > sysctlMaxName || !sysctlNameFormat.MatchString(k) {
			return nil, fmt.Errorf("%s is not a valid sysctl name (segments of a-z, 0-9, '-' and '_' separated by '.' or '/', at most %d): %w", field, sysctlMaxName, ErrInvalid)
		}
		if len(v) > sysctlMaxValue || strings.ContainsAny(v, "\n\r\x00") {
			return nil, fmt.Errorf("%s: the value must be one line of at most %d bytes: %w", field, sysctlMaxValue, ErrInvalid)
		}
		name := sysctlName(k)
		switch {
		case strings.HasPrefix(name, "net."):
			if hostNet {
				return nil, fmt.Errorf("%s: a host-network pod may not set net.* sysctls: %w", field, ErrInvalid)
			}
		case name == "kernel.sem", strings.HasPrefix(name, "kernel.shm"), strings.HasPrefix(name, "kernel.msg"),
			strings.HasPrefix(name, "fs.mqueue."):
			if hostIPC {
				return nil, fmt.Errorf("%s: a host-IPC pod may not set IPC sysctls: %w", field, ErrInvalid)
			}
		default:
			return nil, fmt.Errorf("%s is not a namespaced sysctl (net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*): %w", field, ErrInvalid)
		}
		out[name] = v
	}
	return out, nil
}

// sysctlName converts a "/"-separated name to dots. Dots and slashes are
// swapped, so in "net/ipv4/conf/eno2.100/rp_filter" the VLAN interface
// name stays one element ("eno2/100" in /proc/sys terms).
func sysctlName(k string) string {
	i := strings.IndexAny(k, "./")
	if i < 0 || k[i] == '.' {
		return k
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '/':
			return '.'
		case '.':
			return '/'
		}
		return r
	}, k)
}

// PodSysctls validates a pod's sysctls (see podSysctls) and returns them
// by dotted name, for a pod whose namespaces crisp sets up itself.
func PodSysctls(cfg *runtimeapi.PodSandboxConfig) (map[string]string, error) {
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	return podSysctls(cfg.GetLinux().GetSysctls(), ns.GetNetwork() == runtimeapi.NamespaceMode_NODE, ns.GetIpc() == runtimeapi.NamespaceMode_NODE)
}
