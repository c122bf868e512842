package cri

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"slices"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRIAPIVersion is the CRI version crisp serves.
const CRIAPIVersion = "v1"

// Version reports crisp's name and versions.
func (s *Server) Version(ctx context.Context, req *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           "0.1.0",
		RuntimeName:       RuntimeName,
		RuntimeVersion:    Version,
		RuntimeApiVersion: CRIAPIVersion,
	}, nil
}

// Status tells the truth about readiness: RuntimeReady says whether the
// default runtime handler is there to run pods, NetworkReady whether the
// CNI plugins of the pod network are installed.
func (s *Server) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	netCond := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	if s.net == nil {
		netCond.Status, netCond.Reason, netCond.Message = false, "NoNetwork", "no CNI network configured"
	} else if err := s.net.Status(); err != nil {
		netCond.Status, netCond.Reason, netCond.Message = false, "NetworkPluginNotReady", err.Error()
	}
	rtCond := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
	if h, ok := s.handlers[s.trust.TrustedHandler]; !ok {
		rtCond.Status, rtCond.Reason, rtCond.Message = false, "NoRuntime", "the default runtime handler is not configured"
	} else if _, err := os.Stat(h.Runtime.Handler().Path); err != nil {
		rtCond.Status, rtCond.Reason, rtCond.Message = false, "RuntimeMissing", err.Error()
	}
	resp := &runtimeapi.StatusResponse{
		Status:   &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{rtCond, netCond}},
		Features: &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: false},
	}
	type handlerInfo struct {
		Name, Type, Class, Path, Root string
	}
	var infos []handlerInfo
	for _, name := range slices.Sorted(maps.Keys(s.handlers)) {
		h := s.handlers[name]
		oh := h.Runtime.Handler()
		infos = append(infos, handlerInfo{Name: name, Type: oh.Type, Class: h.Class, Path: oh.Path, Root: oh.Root})
		resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtimeapi.RuntimeHandler{
			Name:     name,
			Features: &runtimeapi.RuntimeHandlerFeatures{},
		})
	}
	if req.GetVerbose() {
		b, err := json.Marshal(struct {
			Handlers []handlerInfo `json:"handlers"`
		}{infos})
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"config": string(b)}
	}
	return resp, nil
}

// RuntimeConfig reports the cgroup driver: cgroupfs, since crisp talks to
// cgroups directly and the nodes it targets need not run systemd.
func (s *Server) RuntimeConfig(ctx context.Context, req *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	return &runtimeapi.RuntimeConfigResponse{
		Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: runtimeapi.CgroupDriver_CGROUPFS},
	}, nil
}
