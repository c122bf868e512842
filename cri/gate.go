package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/adminpb"
)

// readOnly are the calls that only read the database (or the node's
// counters): crispd answers them as soon as its sockets open after a
// restart, from the rows as they are, while every call that changes the
// node waits for the startup reconcile (GRPCConfig.Ready), which must run
// alone. kubelet's first relist after a restart needs no more than these.
var readOnly = map[string]bool{
	runtimeapi.RuntimeService_Version_FullMethodName:               true,
	runtimeapi.RuntimeService_Status_FullMethodName:                true,
	runtimeapi.RuntimeService_RuntimeConfig_FullMethodName:         true,
	runtimeapi.RuntimeService_ListPodSandbox_FullMethodName:        true,
	runtimeapi.RuntimeService_PodSandboxStatus_FullMethodName:      true,
	runtimeapi.RuntimeService_ListContainers_FullMethodName:        true,
	runtimeapi.RuntimeService_ContainerStatus_FullMethodName:       true,
	runtimeapi.RuntimeService_ContainerStats_FullMethodName:        true,
	runtimeapi.RuntimeService_ListContainerStats_FullMethodName:    true,
	runtimeapi.RuntimeService_PodSandboxStats_FullMethodName:       true,
	runtimeapi.RuntimeService_ListPodSandboxStats_FullMethodName:   true,
	runtimeapi.RuntimeService_ListMetricDescriptors_FullMethodName: true,
	runtimeapi.RuntimeService_ListPodSandboxMetrics_FullMethodName: true,
	runtimeapi.ImageService_ListImages_FullMethodName:              true,
	runtimeapi.ImageService_ImageStatus_FullMethodName:             true,
	runtimeapi.ImageService_ImageFsInfo_FullMethodName:             true,
	adminpb.Admin_Info_FullMethodName:                              true,
	adminpb.Admin_ListImages_FullMethodName:                        true,
}

// waitReady holds a call that changes the node until ready is closed, or
// until the caller gives up. A nil ready holds nothing.
func waitReady(ctx context.Context, ready <-chan struct{}, method string) error {
	if ready == nil || readOnly[method] {
		return nil
	}
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: crispd is still reconciling the node after its start: %w", method, ctx.Err())
	}
}
