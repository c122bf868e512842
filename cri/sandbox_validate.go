package cri

import (
	"fmt"
	"net"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/runtimes/oci"
)

// validateSandbox checks a RunPodSandbox config before anything is
// recorded or created.
func validateSandbox(cfg *runtimeapi.PodSandboxConfig) error {
	if cfg == nil {
		return fmt.Errorf("run pod sandbox: config is missing: %w", ErrInvalid)
	}
	m := cfg.Metadata
	if m == nil {
		return fmt.Errorf("run pod sandbox: config.metadata is missing: %w", ErrInvalid)
	}
	for field, v := range map[string]string{"metadata.name": m.Name, "metadata.namespace": m.Namespace, "metadata.uid": m.Uid} {
		if err := checkName(field, v); err != nil {
			return fmt.Errorf("run pod sandbox %s/%s: %w", m.Namespace, m.Name, err)
		}
	}
	if cfg.LogDirectory != "" {
		if err := checkAbs("log_directory", cfg.LogDirectory); err != nil {
			return fmt.Errorf("run pod sandbox %s/%s: %w", m.Namespace, m.Name, err)
		}
	}
	if h := cfg.Hostname; h != "" && (len(h) > 64 || !safeName.MatchString(h)) {
		return fmt.Errorf("run pod sandbox %s/%s: hostname %q is not a valid hostname: %w", m.Namespace, m.Name, h, ErrInvalid)
	}
	if dns := cfg.DnsConfig; dns != nil {
		for _, s := range dns.Servers {
			if net.ParseIP(s) == nil {
				return fmt.Errorf("run pod sandbox %s/%s: dns server %q is not an IP address: %w", m.Namespace, m.Name, s, ErrInvalid)
			}
		}
	}
	for _, pm := range cfg.PortMappings {
		if pm.ContainerPort <= 0 || pm.ContainerPort > 65535 || pm.HostPort < 0 || pm.HostPort > 65535 {
			return fmt.Errorf("run pod sandbox %s/%s: port mapping %d->%d is out of range: %w", m.Namespace, m.Name, pm.HostPort, pm.ContainerPort, ErrInvalid)
		}
		if pm.HostIp != "" && net.ParseIP(pm.HostIp) == nil {
			return fmt.Errorf("run pod sandbox %s/%s: port mapping host_ip %q is not an IP address: %w", m.Namespace, m.Name, pm.HostIp, ErrInvalid)
		}
	}
	return nil
}

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
func checkPodNetwork(cfg *runtimeapi.PodSandboxConfig, handler string, rt *oci.Runtime) error {
	if rt == nil || !rt.Netstack() || !hostNetwork(cfg) {
		return nil
	}
	m := cfg.Metadata
	return fmt.Errorf("run pod sandbox %s/%s: a host-network pod cannot run on handler %q, whose gVisor runs its own network stack "+
		"(runtimes.%s.network = %q); use a handler with network = %q: %w", m.Namespace, m.Name, handler, handler, oci.NetworkSandbox, oci.NetworkHost, ErrPrecondition)
}
