package cri

import (
	"context"
	"errors"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/oci"
)

// ContainerStats reports a running container's CPU and memory use, as its
// runtime measures them.
func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	c, rt, err := s.containerAndRuntime(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, err := s.statsOf(ctx, c, rt)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: st}, nil
}

// ListContainerStats reports the stats of the running containers that
// match the filter.
func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	f := db.ContainerFilter{State: db.ContainerRunning}
	if fl := req.GetFilter(); fl != nil {
		f.IDPrefix, f.Labels = fl.Id, fl.LabelSelector
		if fl.PodSandboxId != "" {
			sb, err := s.sandboxFor(ctx, fl.PodSandboxId)
			if err != nil {
				return &runtimeapi.ListContainerStatsResponse{}, nil
			}
			f.SandboxID = sb.ID
		}
	}
	cs, err := s.store.ListContainers(ctx, f)
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListContainerStatsResponse{}
	for _, c := range cs {
		_, rt, err := s.containerAndRuntime(ctx, c.ID)
		if err != nil {
			continue
		}
		st, err := s.statsOf(ctx, c, rt)
		if errors.Is(err, oci.ErrNotRunning) || errors.Is(err, oci.ErrNotFound) {
			continue // exited since the list: the next relist says so
		}
		if err != nil {
			return nil, err
		}
		resp.Stats = append(resp.Stats, st)
	}
	return resp, nil
}

func (s *Server) statsOf(ctx context.Context, c db.Container, rt Runtime) (*runtimeapi.ContainerStats, error) {
	attrs := &runtimeapi.ContainerAttributes{Id: c.ID, Metadata: &runtimeapi.ContainerMetadata{Name: c.KubeName, Attempt: c.Attempt},
		Labels: c.Labels, Annotations: c.Annotations}
	if c.State != db.ContainerRunning {
		return &runtimeapi.ContainerStats{Attributes: attrs}, nil
	}
	st, err := rt.Stats(ctx, c.ID)
	if err != nil {
		return nil, fmt.Errorf("stats of container %s: %w", c.ID, err)
	}
	ts := st.Timestamp.UnixNano()
	return &runtimeapi.ContainerStats{
		Attributes: attrs,
		Cpu:        &runtimeapi.CpuUsage{Timestamp: ts, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: st.CPUUsageNanos}},
		Memory: &runtimeapi.MemoryUsage{Timestamp: ts, WorkingSetBytes: &runtimeapi.UInt64Value{Value: st.MemoryWorkingSetBytes},
			UsageBytes: &runtimeapi.UInt64Value{Value: st.MemoryUsageBytes}},
	}, nil
}

// ReopenContainerLog asks the container's monitor to reopen its log file,
// after kubelet rotated it.
func (s *Server) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	c, err := s.containerFor(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c.State != db.ContainerRunning {
		return nil, fmt.Errorf("reopen log of container %s: it is %s, not running: %w", c.ID, c.State, ErrPrecondition)
	}
	if err := oci.ReopenLog(ctx, s.files.Container(c.ID), c.LogPath); err != nil {
		return nil, fmt.Errorf("reopen log of container %s: %w", c.ID, err)
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}
