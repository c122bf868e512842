package cri

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
)

// sandboxConfig decodes the CRI config stored with a sandbox.
func sandboxConfig(sb db.Sandbox) (*runtimeapi.PodSandboxConfig, error) {
	cfg := &runtimeapi.PodSandboxConfig{}
	if err := proto.Unmarshal(sb.Config, cfg); err != nil {
		return nil, fmt.Errorf("decode stored config of sandbox %s: %w", sb.ID, err)
	}
	return cfg, nil
}

func sandboxState(st db.SandboxState) runtimeapi.PodSandboxState {
	if st == db.SandboxReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

func sandboxMetadata(sb db.Sandbox) *runtimeapi.PodSandboxMetadata {
	return &runtimeapi.PodSandboxMetadata{Name: sb.KubeName, Namespace: sb.KubeNamespace, Uid: sb.KubeUID, Attempt: sb.Attempt}
}

// PodSandboxStatus reports a pod's state, IPs and, verbose, the trust
// decision and where its pieces are.
func (s *Server) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	sb, err := s.sandboxFor(ctx, req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st, err := sandboxStatus(sb)
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: st}
	if req.GetVerbose() {
		b, err := json.Marshal(map[string]any{
			"handler": sb.Handler, "trust": sb.Trust, "trustReason": sb.TrustReason, "privileged": sb.Privileged,
			"netns": sb.NetNSPath, "infraID": sb.InfraID, "state": sb.State, "name": sb.Name,
		})
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

// sandboxStatus is pod sb's CRI status as recorded: what PodSandboxStatus
// answers and what container events carry.
func sandboxStatus(sb db.Sandbox) (*runtimeapi.PodSandboxStatus, error) {
	cfg, err := sandboxConfig(sb)
	if err != nil {
		return nil, err
	}
	st := &runtimeapi.PodSandboxStatus{
		Id: sb.ID, Metadata: sandboxMetadata(sb), State: sandboxState(sb.State), CreatedAt: sb.CreatedAt,
		Labels: sb.Labels, Annotations: sb.Annotations, RuntimeHandler: sb.Handler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: nsOptions(cfg)}},
	}
	if len(sb.IPs) > 0 && sb.State == db.SandboxReady {
		st.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: sb.IPs[0]}
		for _, ip := range sb.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return st, nil
}

// ListPodSandbox lists pods, filtered by id (or prefix), state and labels
// in SQL.
func (s *Server) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	fl := req.GetFilter()
	if fl.GetId() != "" {
		return s.listSandboxesByID(ctx, fl)
	}
	all, err := s.listSandboxes(ctx)
	if err != nil {
		return nil, err
	}
	if fl == nil {
		return &runtimeapi.ListPodSandboxResponse{Items: all}, nil
	}
	resp := &runtimeapi.ListPodSandboxResponse{}
	for _, sb := range all {
		if (fl.State == nil || sb.State == fl.State.State) && hasLabels(sb.Labels, fl.LabelSelector) {
			resp.Items = append(resp.Items, sb)
		}
	}
	return resp, nil
}

// listSandboxesByID answers a filter by id (prefix), which kubelet never
// sends, from SQLite.
func (s *Server) listSandboxesByID(ctx context.Context, fl *runtimeapi.PodSandboxFilter) (*runtimeapi.ListPodSandboxResponse, error) {
	f := db.SandboxFilter{IDPrefix: fl.Id, Labels: fl.LabelSelector}
	if fl.State != nil {
		if fl.State.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			f.State = db.SandboxReady
		} else {
			f.State = db.SandboxNotReady
		}
	}
	sbs, err := s.store.ListSandboxes(ctx, f)
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListPodSandboxResponse{}
	for _, sb := range sbs {
		if sb.State == db.SandboxCreating || sb.State == db.SandboxRemoving {
			continue // not a pod kubelet can act on yet, or any more
		}
		resp.Items = append(resp.Items, listedSandbox(sb))
	}
	return resp, nil
}
