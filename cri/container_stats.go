package cri

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/oci"
)

// ContainerStats reports a container's resource use, read from its cgroup
// (see stats.go), and its writable layer. A container that is not running
// reports its attributes and writable layer only.
func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	c, err := s.containerFor(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	sb, err := s.store.Sandbox(ctx, c.SandboxID)
	if err != nil {
		return nil, fmt.Errorf("pod of container %s: %w", c.ID, err)
	}
	runsc := make(chan struct{}, 1)
	r, err := s.readContainer(ctx, c, sb, &cgroupParents{}, runsc, containerParts)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: s.containerStats(r)}, nil
}

// ListContainerStats reports the stats of the running containers that
// match the filter, read from their cgroups several at a time. A container
// that exited since the list is left out: the next relist says so.
func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	fl := req.GetFilter()
	if fl.GetId() == "" && fl.GetPodSandboxId() == "" && len(fl.GetLabelSelector()) == 0 {
		// One reading for concurrent callers, on a context none of them
		// can cancel for the others.
		shared := context.WithoutCancel(ctx)
		return s.allCtrStats.get(s.store.Generation, func() (*runtimeapi.ListContainerStatsResponse, error) {
			return s.listContainerStats(shared, nil)
		})
	}
	return s.listContainerStats(ctx, fl)
}

func (s *Server) listContainerStats(ctx context.Context, fl *runtimeapi.ContainerStatsFilter) (*runtimeapi.ListContainerStatsResponse, error) {
	f := db.ContainerFilter{State: db.ContainerRunning}
	if fl != nil {
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
	sandboxes, err := s.sandboxesByID(ctx)
	if err != nil {
		return nil, err
	}
	s.cpuRates.prune(time.Now())
	resp := &runtimeapi.ListContainerStatsResponse{}
	for _, r := range s.readContainers(ctx, cs, sandboxes, &cgroupParents{}, containerParts) {
		if r.sample == nil {
			continue // exited since the list
		}
		resp.Stats = append(resp.Stats, s.containerStats(r))
	}
	return resp, nil
}

// sandboxesByID is every pod row, by id: one query for a whole list call.
func (s *Server) sandboxesByID(ctx context.Context) (map[string]db.Sandbox, error) {
	sbs, err := s.store.ListSandboxes(ctx, db.SandboxFilter{})
	if err != nil {
		return nil, err
	}
	m := make(map[string]db.Sandbox, len(sbs))
	for _, sb := range sbs {
		m[sb.ID] = sb
	}
	return m, nil
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
