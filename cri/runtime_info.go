package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/ocispec"
	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/network"
	"github.com/crisp-cri/crisp/runtimes/oci"
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
	} else if err := s.net.Status(); errors.Is(err, network.ErrNoNetwork) {
		netCond.Status, netCond.Reason, netCond.Message = false, "NoNetworkConfig", err.Error()
	} else if err != nil {
		netCond.Status, netCond.Reason, netCond.Message = false, "NetworkPluginNotReady", err.Error()
	}
	rtCond := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
	if h, ok := s.handlers[s.trust.TrustedHandler]; !ok {
		rtCond.Status, rtCond.Reason, rtCond.Message = false, "NoRuntime", "the default runtime handler is not configured"
	} else if _, err := os.Stat(h.Runtime.Handler().Path); err != nil {
		rtCond.Status, rtCond.Reason, rtCond.Message = false, "RuntimeMissing", err.Error()
	}
	resp := &runtimeapi.StatusResponse{
		Status:          &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{rtCond, netCond}},
		Features:        s.runtimeFeatures(),
		RuntimeHandlers: []*runtimeapi.RuntimeHandler{{Name: "", Features: s.defaultHandlerFeatures()}},
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
			Features: &runtimeapi.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: h.Features.RecursiveReadOnly},
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

// UpdateRuntimeConfig takes the node's pod CIDR from kubelet, which sends
// it at start and when it changes, for the built-in bridge. It is kept in
// the database first, because kubelet does not send it again to a
// restarted crispd.
func (s *Server) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if cidr == "" {
		return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
	}
	subnets, err := network.ParseCIDRs(cidr)
	if err != nil {
		return nil, fmt.Errorf("update runtime config: pod_cidr: %v: %w", err, ErrInvalid)
	}
	if err := network.CheckSubnets(subnets); err != nil {
		return nil, fmt.Errorf("update runtime config: pod_cidr %q: %v: %w", cidr, err, ErrInvalid)
	}
	saved, err := s.store.NodeValue(ctx, db.NodePodCIDR)
	if err != nil {
		return nil, err
	}
	if saved == cidr {
		return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
	}
	if err := s.store.SetNodeValue(ctx, db.NodePodCIDR, cidr); err != nil {
		return nil, err
	}
	if err := s.net.SetPodCIDRs(subnets); err != nil {
		return nil, fmt.Errorf("update runtime config: pod_cidr %q: %w", cidr, err)
	}
	s.log.Info("node pod CIDR set", slog.String("pod_cidr", cidr), slog.String("was", saved))
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

// criMountOptions are the CRI mount options crisp passes on (see
// ocispec); kubelet uses them only where every handler takes them.
var criMountOptions = []string{"noexec", "nodev", "nosuid"}

// runtimeFeatures are crisp's own, whatever the handler: supplemental
// groups policy Strict and the user's ids in ContainerStatus; the CRI
// mount options when every handler's runtime accepts them; no user
// namespaces (crisp refuses them).
func (s *Server) runtimeFeatures() *runtimeapi.RuntimeFeatures {
	mountOpts := len(s.handlers) > 0
	for _, h := range s.handlers {
		mountOpts = mountOpts && h.Features.HasMountOptions(criMountOptions...)
	}
	return &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: true, MountOptions: mountOpts}
}

// defaultHandlerFeatures are those of the "" handler: a pod that names no
// handler may be routed to the trusted or the untrusted one (trust
// policy), so it gets only what both can do.
func (s *Server) defaultHandlerFeatures() *runtimeapi.RuntimeHandlerFeatures {
	rro := false
	for i, name := range []string{s.trust.TrustedHandler, s.trust.UntrustedHandler} {
		h, ok := s.handlers[name]
		if !ok {
			continue
		}
		rro = h.Features.RecursiveReadOnly && (i == 0 || rro)
	}
	return &runtimeapi.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: rro}
}

// checkHandlerFeatures refuses mounts that the pod's handler cannot make
// as asked: kubelet checks the advertised features first, other clients
// may not, and a mount silently made writable or without its options
// would be worse than no container.
func checkHandlerFeatures(cfg *runtimeapi.ContainerConfig, name string, h Handler) error {
	for i, m := range cfg.GetMounts() {
		if m.GetRecursiveReadOnly() && !h.Features.RecursiveReadOnly {
			return fmt.Errorf("mounts[%d].recursive_read_only: runtime handler %q cannot make recursive read-only mounts: %w", i, name, ocispec.ErrUnsupported)
		}
		if len(m.GetMountOptions()) > 0 && !h.Features.HasMountOptions(m.GetMountOptions()...) {
			return fmt.Errorf("mounts[%d].mount_options %v: runtime handler %q does not take them: %w", i, m.GetMountOptions(), name, ocispec.ErrUnsupported)
		}
		// gVisor's mounts live in its sentry: none can reach the host,
		// and runsc refuses a shared root.
		if m.GetPropagation() == runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL && h.Runtime != nil &&
			h.Runtime.Handler().Type == oci.TypeRunsc {
			return fmt.Errorf("mounts[%d].propagation: runtime handler %q (gVisor) cannot propagate mounts back to the host: %w", i, name, ocispec.ErrUnsupported)
		}
	}
	return nil
}
