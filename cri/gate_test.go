package cri

import (
	"context"
	"errors"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/adminpb"
)

func TestWaitReady(t *testing.T) {
	ready := make(chan struct{})
	ctx := context.Background()
	for _, m := range []string{runtimeapi.RuntimeService_ListContainers_FullMethodName, runtimeapi.RuntimeService_ContainerStatus_FullMethodName,
		runtimeapi.ImageService_ImageFsInfo_FullMethodName, adminpb.Admin_Info_FullMethodName} {
		if err := waitReady(ctx, ready, m); err != nil {
			t.Errorf("waitReady(%s) before the startup reconcile = %v, want nil (a read)", m, err)
		}
	}
	for _, m := range []string{runtimeapi.RuntimeService_RunPodSandbox_FullMethodName, runtimeapi.RuntimeService_ExecSync_FullMethodName,
		runtimeapi.ImageService_RemoveImage_FullMethodName, adminpb.Admin_ReconcileNow_FullMethodName} {
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		err := waitReady(short, ready, m)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("waitReady(%s) before the startup reconcile = %v, want it held until the deadline", m, err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- waitReady(ctx, ready, runtimeapi.RuntimeService_CreateContainer_FullMethodName) }()
	close(ready)
	if err := <-done; err != nil {
		t.Errorf("waitReady(CreateContainer) after ready = %v", err)
	}
	if err := waitReady(ctx, nil, runtimeapi.RuntimeService_RunPodSandbox_FullMethodName); err != nil {
		t.Errorf("waitReady without a gate = %v", err)
	}
}
