package cri

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
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
