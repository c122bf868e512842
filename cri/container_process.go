package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/ocispec"
	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/oci"
)

// runUser is the effective identity of a container's process, as recorded
// in containers.run_user (operators read it with crispctl sql).
type runUser struct {
	UID                uint32   `json:"uid"`
	GID                uint32   `json:"gid"`
	SupplementalGroups []uint32 `json:"supplemental_groups"`
}

// encodeUser records u; its groups are the process's (getgroups(2)),
// which crisp's specs always start with the primary group.
func encodeUser(u specs.User) (string, error) {
	b, err := json.Marshal(runUser{UID: u.UID, GID: u.GID, SupplementalGroups: append([]uint32{}, u.AdditionalGids...)})
	return string(b), err
}

func encodeResources(r *runtimeapi.LinuxContainerResources) (string, error) {
	b, err := protojson.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("encode resources: %w", err)
	}
	return string(b), nil
}

// processStatus fills in what CreateContainer resolved of c's process:
// its user, the resources in force and the stop signal. Rows made before
// crisp recorded these, or rebuilt from a lost database, leave the fields
// unset rather than guess.
func processStatus(c db.Container, st *runtimeapi.ContainerStatus) error {
	if c.RunUser != "" {
		var u runUser
		if err := json.Unmarshal([]byte(c.RunUser), &u); err != nil {
			return fmt.Errorf("decode run_user of container %s: %w", c.ID, err)
		}
		groups := []int64{}
		for _, g := range u.SupplementalGroups {
			groups = append(groups, int64(g))
		}
		st.User = &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{
			Uid: int64(u.UID), Gid: int64(u.GID), SupplementalGroups: groups}}
	}
	if c.Resources != "" {
		res, err := decodeResources(c)
		if err != nil {
			return err
		}
		st.Resources = &runtimeapi.ContainerResources{Linux: res}
	}
	st.StopSignal = ocispec.CRISignal(syscall.Signal(c.StopSignal))
	return nil
}

func decodeResources(c db.Container) (*runtimeapi.LinuxContainerResources, error) {
	res := &runtimeapi.LinuxContainerResources{}
	if c.Resources == "" {
		return res, nil
	}
	if err := protojson.Unmarshal([]byte(c.Resources), res); err != nil {
		return nil, fmt.Errorf("decode resources of container %s: %w", c.ID, err)
	}
	return res, nil
}

// UpdateContainerResources changes a created or running container's CPU
// and memory limits in place. runsc cannot (FailedPrecondition).
func (s *Server) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	c, rt, err := s.containerAndRuntime(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c.State != db.ContainerRunning && c.State != db.ContainerCreated {
		return nil, fmt.Errorf("update resources of container %s: it is %s: %w", c.ID, c.State, ErrPrecondition)
	}
	res, err := ocispec.Resources(req.GetLinux(), s.clampOOM, s.missing)
	if err != nil {
		return nil, fmt.Errorf("update resources of container %s: %w", c.ID, err)
	}
	cur, err := decodeResources(c)
	if err != nil {
		return nil, err
	}
	if err := rt.Update(ctx, c.ID, res); err != nil {
		if errors.Is(err, oci.ErrUnsupported) {
			return nil, fmt.Errorf("update resources of container %s: %v: %w", c.ID, err, ErrPrecondition)
		}
		return nil, fmt.Errorf("update resources of container %s: %w", c.ID, err)
	}
	applied := ocispec.AppliedResources(req.GetLinux(), s.clampOOM, s.missing)
	enc, err := encodeResources(ocispec.UpdatedResources(cur, applied))
	if err != nil {
		return nil, err
	}
	if err := s.store.SetContainerResources(ctx, c.ID, enc); err != nil {
		return nil, fmt.Errorf("record resources of container %s: %w", c.ID, err)
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}
