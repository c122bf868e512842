package cri

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
)

// containerConfig decodes the CRI config stored with a container.
func containerConfig(c db.Container) (*runtimeapi.ContainerConfig, error) {
	cfg := &runtimeapi.ContainerConfig{}
	if err := proto.Unmarshal(c.Config, cfg); err != nil {
		return nil, fmt.Errorf("decode stored config of container %s: %w", c.ID, err)
	}
	return cfg, nil
}

func containerState(st db.ContainerState) runtimeapi.ContainerState {
	switch st {
	case db.ContainerCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case db.ContainerRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case db.ContainerExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

// containerFor resolves a (possibly truncated) container id to its row.
func (s *Server) containerFor(ctx context.Context, id string) (db.Container, error) {
	if id == "" {
		return db.Container{}, fmt.Errorf("container id is empty: %w", ErrInvalid)
	}
	full, err := s.store.ResolveContainerID(ctx, id)
	if err != nil {
		return db.Container{}, err
	}
	return s.store.Container(ctx, full)
}

// ContainerStatus reports a container as recorded: state, times, exit code
// and reason (OOMKilled included), image and log path.
func (s *Server) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	c, err := s.containerFor(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, err := containerStatus(c)
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: st}
	if req.GetVerbose() {
		b, err := json.Marshal(map[string]any{"pid": c.PID, "sandboxID": c.SandboxID, "name": c.Name, "state": c.State})
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

// containerStatus is container c's CRI status as recorded: what
// ContainerStatus answers and what container events carry.
func containerStatus(c db.Container) (*runtimeapi.ContainerStatus, error) {
	cfg, err := containerConfig(c)
	if err != nil {
		return nil, err
	}
	st := &runtimeapi.ContainerStatus{
		Id:          c.ID,
		Metadata:    &runtimeapi.ContainerMetadata{Name: c.KubeName, Attempt: c.Attempt},
		State:       containerState(c.State),
		CreatedAt:   c.CreatedAt,
		StartedAt:   c.StartedAt,
		FinishedAt:  c.FinishedAt,
		Image:       &runtimeapi.ImageSpec{Image: c.Image, Annotations: cfg.GetImage().GetAnnotations()},
		ImageRef:    c.ImageRef,
		ImageId:     c.ImageRef,
		Reason:      c.Reason,
		Message:     c.Message,
		Labels:      c.Labels,
		Annotations: c.Annotations,
		Mounts:      cfg.Mounts,
		LogPath:     c.LogPath,
	}
	if c.ExitCode != nil {
		st.ExitCode = *c.ExitCode
	}
	if err := processStatus(c, st); err != nil {
		return nil, err
	}
	return st, nil
}

// ListContainers lists containers, filtered in SQL by id (or prefix),
// state, sandbox and labels.
func (s *Server) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	fl := req.GetFilter()
	if fl.GetId() != "" {
		return s.listContainersByID(ctx, fl)
	}
	all, err := s.listContainers(ctx)
	if err != nil {
		return nil, err
	}
	if fl == nil {
		return &runtimeapi.ListContainersResponse{Containers: all}, nil
	}
	podID := ""
	if fl.PodSandboxId != "" {
		sb, err := s.sandboxFor(ctx, fl.PodSandboxId)
		if err != nil {
			return &runtimeapi.ListContainersResponse{}, nil // no such pod: no containers
		}
		podID = sb.ID
	}
	resp := &runtimeapi.ListContainersResponse{}
	for _, c := range all {
		if (podID == "" || c.PodSandboxId == podID) && (fl.State == nil || c.State == fl.State.State) && hasLabels(c.Labels, fl.LabelSelector) {
			resp.Containers = append(resp.Containers, c)
		}
	}
	return resp, nil
}

// listContainersByID answers a filter by id (prefix), which kubelet never
// sends, from SQLite.
func (s *Server) listContainersByID(ctx context.Context, fl *runtimeapi.ContainerFilter) (*runtimeapi.ListContainersResponse, error) {
	f := db.ContainerFilter{IDPrefix: fl.Id, Labels: fl.LabelSelector}
	if fl.PodSandboxId != "" {
		sb, err := s.sandboxFor(ctx, fl.PodSandboxId)
		if err != nil {
			return &runtimeapi.ListContainersResponse{}, nil // no such pod: no containers
		}
		f.SandboxID = sb.ID
	}
	if fl.State != nil {
		switch fl.State.State {
		case runtimeapi.ContainerState_CONTAINER_CREATED:
			f.State = db.ContainerCreated
		case runtimeapi.ContainerState_CONTAINER_RUNNING:
			f.State = db.ContainerRunning
		case runtimeapi.ContainerState_CONTAINER_EXITED:
			f.State = db.ContainerExited
		default:
			f.State = db.ContainerUnknown
		}
	}
	cs, err := s.store.ListContainers(ctx, f)
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListContainersResponse{}
	for _, c := range cs {
		if c.State == db.ContainerCreating || c.State == db.ContainerRemoving {
			continue
		}
		resp.Containers = append(resp.Containers, listedContainer(c))
	}
	return resp, nil
}
