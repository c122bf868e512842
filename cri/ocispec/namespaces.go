package ocispec

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podNamespaces returns the pod's namespace options, never nil.
func podNamespaces(sb *Sandbox) *runtimeapi.NamespaceOption {
	if o := sb.Config.GetLinux().GetSecurityContext().GetNamespaceOptions(); o != nil {
		return o
	}
	return &runtimeapi.NamespaceOption{}
}

func procNS(pid int, kind string) string { return fmt.Sprintf("/proc/%d/ns/%s", pid, kind) }

// checkUserns refuses user namespaces: crisp does not map ids yet, and
// running a pod that asked for one without it would lose isolation.
func checkUserns(field string, o *runtimeapi.NamespaceOption) error {
	if u := o.GetUsernsOptions(); u != nil && u.Mode != runtimeapi.NamespaceMode_NODE {
		return fmt.Errorf("%s.userns_options: user namespaces are not supported: %w", field, ErrInvalid)
	}
	return nil
}

// joinOrNew is the pod-shared namespace kind: the pinned path, else the
// infra's, else a new one (a pod without infra or pins).
func joinOrNew(t specs.LinuxNamespaceType, kind, pinned string, infraPID int) specs.LinuxNamespace {
	switch {
	case pinned != "":
		return specs.LinuxNamespace{Type: t, Path: pinned}
	case infraPID > 0:
		return specs.LinuxNamespace{Type: t, Path: procNS(infraPID, kind)}
	}
	return specs.LinuxNamespace{Type: t}
}

// containerNamespaces lists a container's namespaces. Network and IPC
// follow the pod (its config is what the sandbox was built from; kubelet
// copies them into the container's options). PID follows the container's
// options: POD joins the infra's, TARGET the target container's, NODE is
// the host's. UTS is the host's with host networking, as in containerd and
// CRI-O. A namespace absent from the list is the host's. hostUTS reports
// that, since runc refuses a hostname without a UTS namespace.
func containerNamespaces(in *ContainerInput) (ns []specs.LinuxNamespace, hostUTS bool, err error) {
	sb := &in.Sandbox
	pod := podNamespaces(sb)
	opts := in.Config.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if opts == nil {
		opts = pod
	}
	if err := checkUserns("sandbox namespace_options", pod); err != nil {
		return nil, false, err
	}
	if err := checkUserns("security_context.namespace_options", opts); err != nil {
		return nil, false, err
	}

	switch opts.Pid {
	case runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_CONTAINER:
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace})
	case runtimeapi.NamespaceMode_POD:
		if sb.InfraPID <= 0 {
			return nil, false, fmt.Errorf("security_context.namespace_options.pid is POD but the pod has no infra process to share it: %w", ErrInvalid)
		}
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: procNS(sb.InfraPID, "pid")})
	case runtimeapi.NamespaceMode_TARGET:
		if in.TargetPID <= 0 {
			return nil, false, fmt.Errorf("security_context.namespace_options.target_id %q names no running container of the pod: %w", opts.TargetId, ErrInvalid)
		}
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: procNS(in.TargetPID, "pid")})
	default:
		return nil, false, fmt.Errorf("security_context.namespace_options.pid: unknown mode %d: %w", opts.Pid, ErrInvalid)
	}

	hostNet := pod.Network == runtimeapi.NamespaceMode_NODE
	if !hostNet {
		ns = append(ns, joinOrNew(specs.NetworkNamespace, "net", sb.NetNSPath, sb.InfraPID))
	}
	if pod.Ipc != runtimeapi.NamespaceMode_NODE {
		ns = append(ns, joinOrNew(specs.IPCNamespace, "ipc", sb.IPCNSPath, sb.InfraPID))
	}
	if !hostNet {
		ns = append(ns, joinOrNew(specs.UTSNamespace, "uts", sb.UTSNSPath, sb.InfraPID))
	}
	ns = append(ns, specs.LinuxNamespace{Type: specs.MountNamespace})
	// A private cgroup namespace shows the container its own cgroup as the
	// root and hides the node's tree; privileged containers keep the
	// host's, as in containerd and Docker.
	if in.CgroupNamespace && !in.Config.GetLinux().GetSecurityContext().GetPrivileged() {
		ns = append(ns, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	return ns, hostNet, nil
}

// infraNamespaces lists the infra container's namespaces: it creates the
// pod's (or joins the pinned ones), so containers can join it.
func infraNamespaces(sb *Sandbox) (ns []specs.LinuxNamespace, hostUTS bool, err error) {
	pod := podNamespaces(sb)
	if err := checkUserns("namespace_options", pod); err != nil {
		return nil, false, err
	}
	if pod.Pid != runtimeapi.NamespaceMode_NODE {
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	hostNet := pod.Network == runtimeapi.NamespaceMode_NODE
	if !hostNet {
		ns = append(ns, joinOrNew(specs.NetworkNamespace, "net", sb.NetNSPath, 0))
	}
	if pod.Ipc != runtimeapi.NamespaceMode_NODE {
		ns = append(ns, joinOrNew(specs.IPCNamespace, "ipc", sb.IPCNSPath, 0))
	}
	if !hostNet {
		ns = append(ns, joinOrNew(specs.UTSNamespace, "uts", sb.UTSNSPath, 0))
	}
	ns = append(ns, specs.LinuxNamespace{Type: specs.MountNamespace})
	return ns, hostNet, nil
}
