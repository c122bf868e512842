package cri

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
)

// Stopping a pod twice, then removing it twice, succeeds each time and
// leaves nothing, for every kind of pod, with a running and a created
// container in it.
func TestStopRemovePodSandboxIdempotent(t *testing.T) {
	tests := []struct {
		name    string
		handler string
		opts    []podOpt
	}{
		{name: "runc"},
		{name: "runc, host network", opts: []podOpt{withHostNetwork}},
		{name: "runc, shared PID namespace", opts: []podOpt{withPIDPod}},
		{name: "runsc", handler: "runsc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNode(t)
			empty := n.state(t)
			ctx := context.Background()
			podCfg := n.podConfig("web", tt.opts...)
			podID := n.runPod(t, podCfg, tt.handler)
			running := n.startCtr(t, podID, podCfg, ctrConfig("app"))
			created := n.createCtr(t, podID, podCfg, ctrConfig("sidecar"))
			for i := range 2 {
				if _, err := n.srv.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
					t.Fatalf("StopPodSandbox() #%d = %v", i+1, err)
				}
			}
			if sb := n.podRow(t, podID); sb.State != db.SandboxNotReady {
				t.Errorf("pod is %s, want notready", sb.State)
			}
			for _, id := range []string{running, created} {
				if c := n.ctrRow(t, id); c.State != db.ContainerExited {
					t.Errorf("container %s is %s, want exited", id, c.State)
				}
			}
			st := n.state(t)
			if len(st.NetNS) != 0 || slices.ContainsFunc(st.Pods, func(s string) bool { return strings.HasPrefix(s, "infra") }) {
				t.Errorf("after the stop: attachments %v, pods %v; want no network and no infra", st.NetNS, st.Pods)
			}
			if got := n.f.count("net.teardown"); tt.opts == nil && got != 1 {
				t.Errorf("teardowns = %d, want 1: the second stop finds the pin gone", got)
			}
			// The status of a stopped pod shows no address.
			resp, err := n.srv.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
			if err != nil || resp.Status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY || resp.Status.Network != nil {
				t.Errorf("PodSandboxStatus() = %v, %v; want notready without network", resp, err)
			}
			for i := range 2 {
				if _, err := n.srv.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
					t.Fatalf("RemovePodSandbox() #%d = %v", i+1, err)
				}
			}
			n.assertState(t, empty, "after stop, stop, remove, remove")
		})
	}
}

// RemovePodSandbox of a ready pod stops it first.
func TestRemovePodSandboxRunning(t *testing.T) {
	n := newTestNode(t)
	empty := n.state(t)
	podCfg := n.podConfig("web", withPIDPod)
	podID := n.runPod(t, podCfg, "")
	n.startCtr(t, podID, podCfg, ctrConfig("app"))
	if _, err := n.srv.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox() = %v", err)
	}
	n.assertState(t, empty, "after removing a running pod")
}

// A stop or remove that fails part way is finished by the next call: every
// step of them is idempotent.
func TestStopRemovePodSandboxRetryFinishes(t *testing.T) {
	tests := []struct {
		name    string
		handler string
		opts    []podOpt
		remove  bool
		fail    string
		timeout time.Duration // of the first call; its code is then DeadlineExceeded
	}{
		{name: "stop: CNI teardown", fail: "net.teardown"},
		{name: "stop: netns", fail: "net.remove-netns"},
		{name: "stop: container kill", fail: "rt.kill"},
		{name: "stop: infra process", opts: []podOpt{withPIDPod}, fail: "pods.stop-infra"},
		{name: "stop: infra container", handler: "runsc", fail: "rt.state", timeout: 200 * time.Millisecond},
		{name: "remove: pod dir", remove: true, fail: "pods.remove"},
		{name: "remove: container rootfs", remove: true, fail: "images.remove-container"},
		{name: "remove: runtime delete", remove: true, fail: "rt.delete"},
		{name: "remove: infra container delete", handler: "runsc", remove: true, fail: "rt.delete"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNode(t)
			empty := n.state(t)
			ctx := context.Background()
			podCfg := n.podConfig("web", tt.opts...)
			podID := n.runPod(t, podCfg, tt.handler)
			n.startCtr(t, podID, podCfg, ctrConfig("app"))
			n.f.failAt(tt.fail, errInjected)
			call := func(ctx context.Context) error {
				if tt.remove {
					_, err := n.srv.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
					return err
				}
				_, err := n.srv.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID})
				return err
			}
			want, first := codes.Internal, ctx
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				first, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
				want = codes.DeadlineExceeded
			}
			if err := call(first); codeOfErr(err) != want {
				t.Fatalf("first call = %v, want %v", err, want)
			}
			if !tt.remove {
				if sb := n.podRow(t, podID); sb.State != db.SandboxReady {
					t.Errorf("pod is %s after a failed stop, want still ready (the network may still be up)", sb.State)
				}
			}
			n.f.failAt(tt.fail, nil)
			if err := call(ctx); err != nil {
				t.Fatalf("second call = %v", err)
			}
			if !tt.remove {
				if sb := n.podRow(t, podID); sb.State != db.SandboxNotReady {
					t.Errorf("pod is %s, want notready", sb.State)
				}
				if st := n.state(t); len(st.NetNS) != 0 {
					t.Errorf("attachments %v left after the stop", st.NetNS)
				}
				if _, err := n.srv.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
					t.Fatal(err)
				}
			}
			n.assertState(t, empty, "after the retry and remove")
		})
	}
}

// Pods in creating or removing are not listed: kubelet cannot act on them.
func TestListPodSandbox(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	web := n.runPod(t, n.podConfig("web"), "")
	db1 := n.runPod(t, n.podConfig("db"), "runsc")
	if _, err := n.srv.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: db1}); err != nil {
		t.Fatal(err)
	}
	n.f.failAt("pods.remove", errInjected)
	gone := n.runPod(t, n.podConfig("gone"), "")
	n.srv.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: gone})
	if sb := n.podRow(t, gone); sb.State != db.SandboxRemoving {
		t.Fatalf("pod is %s, want removing", sb.State)
	}
	ready := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}
	notReady := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}
	tests := []struct {
		name   string
		filter *runtimeapi.PodSandboxFilter
		want   []string
	}{
		{"all", nil, []string{web, db1}},
		{"ready", &runtimeapi.PodSandboxFilter{State: ready}, []string{web}},
		{"not ready", &runtimeapi.PodSandboxFilter{State: notReady}, []string{db1}},
		{"label", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "db"}}, []string{db1}},
		{"id prefix", &runtimeapi.PodSandboxFilter{Id: web[:10]}, []string{web}},
		{"no match", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "none"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := n.srv.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: tt.filter})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range resp.Items {
				got = append(got, p.Id)
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Errorf("ListPodSandbox() = %v, want %v", got, want)
			}
		})
	}
}

// PodSandboxStatus reports the pod's address, namespaces and, verbose, how
// it was placed.
func TestPodSandboxStatus(t *testing.T) {
	n := newTestNode(t)
	id := n.runPod(t, n.podConfig("web", withPIDPod), "runsc")
	resp, err := n.srv.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	st := resp.Status
	if st.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.Network.GetIp() != n.net.ips[id] || st.RuntimeHandler != "runsc" {
		t.Errorf("status = %v, want ready at %s on runsc", st, n.net.ips[id])
	}
	if st.Metadata.Name != "web" || st.Labels["app"] != "web" || st.Linux.Namespaces.Options.Pid != runtimeapi.NamespaceMode_POD {
		t.Errorf("status = %v, want the pod's metadata, labels and namespaces", st)
	}
	for _, want := range []string{`"trustReason":"runtime-class"`, `"infraID":"` + id + `"`, `"handler":"runsc"`} {
		if !strings.Contains(resp.Info["info"], want) {
			t.Errorf("verbose info %s lacks %s", resp.Info["info"], want)
		}
	}
}
