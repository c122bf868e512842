package cri

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/network"
	"github.com/crisp-cri/crisp/runtimes/oci"
)

// Status tells whether pods can run: the default handler's binary is
// there, and the network is ready.
func TestStatusConditions(t *testing.T) {
	tests := []struct {
		name          string
		change        func(n *testNode)
		runtimeReady  bool
		networkReady  bool
		runtimeReason string
		networkReason string
	}{
		{name: "ready", runtimeReady: true, networkReady: true},
		{name: "network not ready", change: func(n *testNode) { n.net.status = errors.New("no conflist") },
			runtimeReady: true, networkReason: "NetworkPluginNotReady"},
		{name: "no network", change: func(n *testNode) { n.srv.net = nil }, runtimeReady: true, networkReason: "NoNetwork"},
		{name: "no network config yet", change: func(n *testNode) { n.net.status = fmt.Errorf("/etc/cni/net.d is empty: %w", network.ErrNoNetwork) },
			runtimeReady: true, networkReason: "NoNetworkConfig"},
		{name: "runtime binary missing", change: func(n *testNode) { n.runc.h.Path = "/nonexistent/runc" },
			networkReady: true, runtimeReason: "RuntimeMissing"},
		{name: "no default handler", change: func(n *testNode) { n.srv.trust.TrustedHandler = "kata" },
			networkReady: true, runtimeReason: "NoRuntime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNode(t)
			if tt.change != nil {
				tt.change(n)
			}
			resp, err := n.srv.Status(context.Background(), &runtimeapi.StatusRequest{Verbose: true})
			if err != nil {
				t.Fatal(err)
			}
			conds := map[string]*runtimeapi.RuntimeCondition{}
			for _, c := range resp.Status.Conditions {
				conds[c.Type] = c
			}
			rt, net := conds[runtimeapi.RuntimeReady], conds[runtimeapi.NetworkReady]
			if rt.Status != tt.runtimeReady || rt.Reason != tt.runtimeReason {
				t.Errorf("RuntimeReady = %v %q, want %v %q", rt.Status, rt.Reason, tt.runtimeReady, tt.runtimeReason)
			}
			if net.Status != tt.networkReady || net.Reason != tt.networkReason {
				t.Errorf("NetworkReady = %v %q, want %v %q", net.Status, net.Reason, tt.networkReady, tt.networkReason)
			}
			if len(resp.RuntimeHandlers) != 3 || !strings.Contains(resp.Info["config"], `"Name":"runsc","Type":"runsc","Class":"untrusted"`) {
				t.Errorf("handlers = %v, info %s; want \"\", runc and runsc", resp.RuntimeHandlers, resp.Info["config"])
			}
		})
	}
}

// Status advertises what the handlers' runtimes said they can do; the ""
// handler (a pod naming none, routed by trust) gets only what both the
// trusted and the untrusted handler can; CreateContainer refuses a mount a
// handler cannot make as asked, leaving nothing.
func TestStatusFeatures(t *testing.T) {
	runcLike := oci.Features{RecursiveReadOnly: true, MountOptions: []string{"nodev", "noexec", "nosuid", "rro"}}
	tests := []struct {
		name              string
		runc, runsc       oci.Features
		rroDefault        bool
		rroRunc, rroRunsc bool
		mountOptions      bool
	}{
		{"runsc without features", runcLike, oci.Features{}, false, true, false, false},
		{"both", runcLike, runcLike, true, true, true, true},
		{"neither", oci.Features{}, oci.Features{}, false, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNode(t)
			n.setFeatures("runc", tt.runc)
			n.setFeatures("runsc", tt.runsc)
			resp, err := n.srv.Status(context.Background(), &runtimeapi.StatusRequest{})
			if err != nil {
				t.Fatal(err)
			}
			rro := map[string]bool{}
			for _, h := range resp.RuntimeHandlers {
				rro[h.Name] = h.Features.RecursiveReadOnlyMounts
				if h.Features.UserNamespaces {
					t.Errorf("handler %q advertises user namespaces, which crisp refuses", h.Name)
				}
			}
			want := map[string]bool{"": tt.rroDefault, "runc": tt.rroRunc, "runsc": tt.rroRunsc}
			if !maps.Equal(rro, want) {
				t.Errorf("recursive read-only by handler = %v, want %v", rro, want)
			}
			f := resp.Features
			if !f.SupplementalGroupsPolicy || f.UserNamespacesHostNetwork || f.MountOptions != tt.mountOptions {
				t.Errorf("features = %v, want supplemental groups policy, mount options %v", f, tt.mountOptions)
			}
		})
	}
}

func TestCreateContainerRefusesWhatTheHandlerCannot(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	n.setFeatures("runc", oci.Features{RecursiveReadOnly: true, MountOptions: []string{"nodev", "noexec", "nosuid"}})
	webCfg, gvCfg := n.podConfig("web"), n.podConfig("gv")
	web, gv := n.runPod(t, webCfg, ""), n.runPod(t, gvCfg, "runsc")
	rro := func(name string) *runtimeapi.ContainerConfig {
		cfg := ctrConfig(name)
		cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: t.TempDir(), Readonly: true, RecursiveReadOnly: true}}
		return cfg
	}
	noexec := ctrConfig("noexec")
	noexec.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: t.TempDir(), MountOptions: []string{"noexec"}}}
	shared := ctrConfig("shared")
	shared.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: t.TempDir(), Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}}
	n.createCtr(t, web, webCfg, rro("app"))
	for _, cfg := range []*runtimeapi.ContainerConfig{rro("app"), noexec, shared} {
		_, err := n.srv.CreateContainer(ctx, createReq(gv, gvCfg, cfg))
		if codeOfErr(err) != codes.Unimplemented || !strings.Contains(err.Error(), `runtime handler "runsc"`) {
			t.Errorf("CreateContainer(%s on runsc) = %v, want Unimplemented naming the handler", cfg.Metadata.Name, err)
		}
	}
	resp, err := n.srv.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: gv}})
	if err != nil || len(resp.Containers) != 0 {
		t.Errorf("containers in the runsc pod after refusals = %v, %v; want none", resp.GetContainers(), err)
	}
}

// Until the network has a config, pods are refused before anything is
// made; host-network pods need none.
func TestRunPodSandboxWaitsForNetworkConfig(t *testing.T) {
	n := newTestNode(t)
	empty := n.state(t)
	n.net.status = fmt.Errorf("/etc/cni/net.d is empty: %w", network.ErrNoNetwork)
	cfg := n.podConfig("web")
	_, err := n.srv.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if codeOfErr(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "/etc/cni/net.d is empty") {
		t.Fatalf("RunPodSandbox() without a network config = %v, want FailedPrecondition naming the directory", err)
	}
	n.assertState(t, empty, "after a pod refused for want of a network")
	n.runPod(t, n.podConfig("host", withHostNetwork), "")
	n.net.status = nil
	n.runPod(t, cfg, "")
}

func TestUpdateRuntimeConfig(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	update := func(cidr string) error {
		_, err := n.srv.UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{
			RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: cidr}}})
		return err
	}
	if err := update("10.244.1.0/24, fd00:1::/64"); err != nil {
		t.Fatalf("UpdateRuntimeConfig() = %v", err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:1::/64")}
	if !slices.Equal(n.net.cidrs, want) {
		t.Errorf("network got pod CIDRs %v, want %v", n.net.cidrs, want)
	}
	if v, err := n.store.NodeValue(ctx, db.NodePodCIDR); err != nil || v != "10.244.1.0/24, fd00:1::/64" {
		t.Errorf("kept pod CIDR = %q, %v", v, err)
	}
	// The same CIDR again (kubelet's periodic call) changes nothing.
	calls := n.f.count("net.set-pod-cidrs")
	if err := update("10.244.1.0/24, fd00:1::/64"); err != nil || n.f.count("net.set-pod-cidrs") != calls {
		t.Errorf("repeated UpdateRuntimeConfig() = %v, %d network calls; want nil, none", err, n.f.count("net.set-pod-cidrs")-calls)
	}
	for _, bad := range []string{"10.0.0.0/33", "10.0.0.1/24", "10.0.0.0/24,10.1.0.0/24", "10.0.0.0/31", "x"} {
		if err := update(bad); codeOfErr(err) != codes.InvalidArgument {
			t.Errorf("UpdateRuntimeConfig(%q) = %v, want InvalidArgument", bad, err)
		}
	}
	if v, _ := n.store.NodeValue(ctx, db.NodePodCIDR); v != "10.244.1.0/24, fd00:1::/64" || !slices.Equal(n.net.cidrs, want) {
		t.Errorf("after refused updates: kept %q, network %v; want both unchanged", v, n.net.cidrs)
	}
	// An empty CIDR is kubelet saying nothing: the last one stays.
	if err := update(""); err != nil {
		t.Errorf("UpdateRuntimeConfig(\"\") = %v", err)
	}
}
