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

// checkPodNetwork refuses a host-network pod on a handler whose gVisor
// runs its own network stack: that netstack takes over the interfaces of
// the pod's own network namespace, and a host-network pod has none to give
// it (it would be left with a loopback only). rt may be nil (a handler
// without a runtime, in tests).
func checkPodNetwork(cfg *runtimeapi.PodSandboxConfig, handler string, rt Runtime) error {
	if rt == nil || !rt.Netstack() || !hostNetwork(cfg) {
		return nil
	}
	m := cfg.Metadata
	return fmt.Errorf("run pod sandbox %s/%s: a host-network pod cannot run on handler %q, whose gVisor runs its own network stack "+
		"(runtimes.%s.network = %q); use a handler with network = %q: %w", m.Namespace, m.Name, handler, handler, oci.NetworkSandbox, oci.NetworkHost, ErrPrecondition)
}
