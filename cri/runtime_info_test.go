package cri

import (
	"context"
	"errors"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
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
			if len(resp.RuntimeHandlers) != 2 || !strings.Contains(resp.Info["config"], `"Name":"runsc","Type":"runsc","Class":"untrusted"`) {
				t.Errorf("handlers = %v, info %s; want runc and runsc", resp.RuntimeHandlers, resp.Info["config"])
			}
		})
	}
}
