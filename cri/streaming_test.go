package cri

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/layout"
	"github.com/crisp-cri/crisp/runtimes/oci"
	"github.com/crisp-cri/crisp/runtimes/trust"
)

// Port-forward dials in the pod's network namespace unless gVisor's
// netstack serves the pod, whose ports only a bridge inside it reaches.
func TestRoutePortForward(t *testing.T) {
	tests := []struct {
		name     string
		sb       db.Sandbox
		netstack bool
		want     forwardRoute
		wantErr  bool
	}{
		{name: "runc pod", sb: db.Sandbox{ID: "p1", NetNSPath: "/run/crisp/netns/p1"},
			want: forwardRoute{netns: "/run/crisp/netns/p1"}},
		{name: "host-network pod", sb: db.Sandbox{ID: "p1"},
			want: forwardRoute{netns: "/proc/self/ns/net"}},
		{name: "gVisor pod in host mode", sb: db.Sandbox{ID: "p1", NetNSPath: "/run/crisp/netns/p1", InfraID: "p1"},
			want: forwardRoute{netns: "/run/crisp/netns/p1"}},
		{name: "gVisor pod on netstack", sb: db.Sandbox{ID: "p1", NetNSPath: "/run/crisp/netns/p1", InfraID: "p1"}, netstack: true,
			want: forwardRoute{bridgeIn: "p1"}},
		{name: "netstack without infra", sb: db.Sandbox{ID: "p1", NetNSPath: "/run/crisp/netns/p1"}, netstack: true,
			wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := routePortForward(tt.sb, tt.netstack)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("routePortForward() = %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrPrecondition) {
				t.Errorf("routePortForward() error %v does not wrap ErrPrecondition", err)
			}
		})
	}
}

// The routing follows the handler's configured network mode.
func TestNetstackFollowsHandler(t *testing.T) {
	for _, tt := range []struct {
		h    oci.Handler
		want bool
	}{
		{oci.Handler{Type: oci.TypeRunsc, Network: oci.NetworkSandbox}, true},
		{oci.Handler{Type: oci.TypeRunsc, Network: oci.NetworkHost}, false},
		{oci.Handler{Type: oci.TypeRunc}, false},
	} {
		sb := db.Sandbox{ID: "p1", NetNSPath: "/n", InfraID: "p1"}
		got, err := routePortForward(sb, oci.New(tt.h, "", layout.Layout{}, nil).Netstack())
		if err != nil || (got.bridgeIn != "") != tt.want {
			t.Errorf("handler %+v: route %+v, %v; want bridge %v", tt.h, got, err, tt.want)
		}
	}
}

// A host-network pod is refused on a netstack handler (it would get a
// loopback only), before anything is recorded; host mode takes it.
func TestHostNetworkPodOnNetstack(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := NewServer(Deps{Log: log,
		Handlers: map[string]Handler{
			"runc":  {Runtime: oci.New(oci.Handler{Name: "runc", Type: oci.TypeRunc}, "", layout.Layout{}, nil), Class: "trusted"},
			"runsc": {Runtime: oci.New(oci.Handler{Name: "runsc", Type: oci.TypeRunsc, Network: oci.NetworkSandbox}, "", layout.Layout{}, nil), Class: "untrusted"},
		},
		Trust: trust.Config{Handlers: map[string]trust.Class{"runc": trust.Trusted, "runsc": trust.Untrusted},
			TrustedHandler: "runc", UntrustedHandler: "runsc"}})
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "hostnet", Namespace: "e2e", Uid: "u1"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}},
	}
	// The store is nil: a refusal must come before the row.
	_, err := s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: "runsc"})
	if !errors.Is(err, ErrPrecondition) || codeOf(err).String() != "FailedPrecondition" {
		t.Errorf("RunPodSandbox(host network, runsc on netstack) = %v, want FailedPrecondition", err)
	}
	if err := checkPodNamespaces(cfg, "runsc", oci.New(oci.Handler{Type: oci.TypeRunsc, Network: oci.NetworkHost}, "", layout.Layout{}, nil)); err != nil {
		t.Errorf("checkPodNamespaces(host network, runsc in host mode) = %v, want nil", err)
	}
	cfg.Linux = nil
	if err := checkPodNamespaces(cfg, "runsc", s.handlers["runsc"].Runtime); err != nil {
		t.Errorf("checkPodNamespaces(pod network, runsc on netstack) = %v, want nil", err)
	}
}
