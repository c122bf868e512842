package cri

import (
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/runtimes/oci"
)

// nsOptions returns the pod's namespace options, never nil.
func nsOptions(cfg *runtimeapi.PodSandboxConfig) *runtimeapi.NamespaceOption {
	if o := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(); o != nil {
		return o
	}
	return &runtimeapi.NamespaceOption{}
}

func hostNetwork(cfg *runtimeapi.PodSandboxConfig) bool {
	return nsOptions(cfg).Network == runtimeapi.NamespaceMode_NODE
}

// checkPodNamespaces refuses what a pod asks of the host's namespaces
// that its handler cannot give, rather than run it without: a
// host-network pod on a handler whose gVisor runs its own network stack
// (that netstack takes over the interfaces of the pod's own network
// namespace, and a host-network pod has none to give it), and a pod
// sharing the host's IPC or PID namespace on any gVisor handler (the
// sentry keeps its own; the pod would see none of the host's shared
// memory or processes). rt may be nil (a handler without a runtime, in
// tests).
func checkPodNamespaces(cfg *runtimeapi.PodSandboxConfig, handler string, rt Runtime) error {
	if rt == nil || rt.Handler().Type != oci.TypeRunsc {
		return nil
	}
	m := cfg.Metadata
	if rt.Netstack() && hostNetwork(cfg) {
		return fmt.Errorf("run pod sandbox %s/%s: a host-network pod cannot run on handler %q, whose gVisor runs its own network stack "+
			"(runtimes.%s.network = %q); use a handler with network = %q: %w", m.Namespace, m.Name, handler, handler, oci.NetworkSandbox, oci.NetworkHost, ErrPrecondition)
	}
	o := nsOptions(cfg)
	for _, ns := range []struct {
		name string
		mode runtimeapi.NamespaceMode
	}{{"IPC", o.Ipc}, {"PID", o.Pid}} {
		if ns.mode == runtimeapi.NamespaceMode_NODE {
			return fmt.Errorf("run pod sandbox %s/%s: the pod shares the host's %s namespace, which handler %q (gVisor) cannot give it: %w",
				m.Namespace, m.Name, ns.name, handler, ErrPrecondition)
		}
	}
	return nil
}
