package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
)

// podConfig is a pod as kubelet sends it for a pod without a shared PID
// namespace.
func podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:  &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: "uid-" + name},
		Hostname:  name,
		Labels:    map[string]string{"app": name, "tier": "e2e"},
		DnsConfig: &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"e2e.svc.cluster.local"}},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

func TestPodSandboxLifecycle(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	rt := d.Runtime()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	run, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("web")})
	if err != nil {
		t.Fatalf("RunPodSandbox() = %v", err)
	}
	id := run.PodSandboxId
	// kubelet's retry of the same request gets the same pod.
	again, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("web")})
	if err != nil || again.PodSandboxId != id {
		t.Errorf("RunPodSandbox(retry) = %v, %v; want %s", again, err, id)
	}
	// A different config under the same name is refused, naming the holder.
	other := podConfig("web")
	other.Hostname = "elsewhere"
	if _, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: other}); status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), id) {
		t.Errorf("RunPodSandbox(same name, other config) = %v, want AlreadyExists naming %s", err, id)
	}

	st, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id[:12], Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(st.Status.GetNetwork().GetIp())
	_, subnet, _ := net.ParseCIDR(harness.TestSubnet)
	if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || ip == nil || !subnet.Contains(ip) {
		t.Errorf("PodSandboxStatus = %v, want ready with an IP in %s", st.Status, harness.TestSubnet)
	}
	var info map[string]any
	json.Unmarshal([]byte(st.Info["info"]), &info)
	if info["handler"] != "runc" || info["trustReason"] != "default" {
		t.Errorf("verbose info = %v, want handler runc, reason default", info)
	}

	list, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "web"}}})
	if err != nil || len(list.Items) != 1 || list.Items[0].Id != id {
		t.Errorf("ListPodSandbox(app=web) = %v, %v", list, err)
	}
	if list, _ := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "db"}}}); len(list.Items) != 0 {
		t.Errorf("ListPodSandbox(app=db) = %v, want none", list.Items)
	}

	// The SQL surface agrees.
	out, _, err := d.Crispctl("sql", "--csv", "SELECT name, state, handler, trust_reason FROM pods")
	if err != nil || out != "name,state,handler,trust_reason\nweb,ready,runc,default\n" {
		t.Errorf("crispctl sql pods = %q, %v", out, err)
	}

	if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("StopPodSandbox() = %v", err)
	}
	if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Errorf("StopPodSandbox() again = %v, want nil", err)
	}
	st, _ = rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if st.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("state after stop = %v, want NOTREADY", st.GetStatus().GetState())
	}
	if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("RemovePodSandbox() = %v", err)
	}
	if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Errorf("RemovePodSandbox() again = %v, want nil", err)
	}
	if _, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id}); status.Code(err) != codes.NotFound {
		t.Errorf("PodSandboxStatus after remove = %v, want NotFound", err)
	}
	assertNoPodLeftovers(t, d)
}

// Bad input gets the right code and leaves nothing behind.
func TestRunPodSandboxBadInput(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t, harness.WithTOML("[trust]\nuntrusted_runtime = \"\""))
	rt := d.Runtime()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	noMeta := podConfig("x")
	noMeta.Metadata = nil
	emptyName := podConfig("x")
	emptyName.Metadata.Name = ""
	badName := podConfig("x")
	badName.Metadata.Name = "../etc"
	relLog := podConfig("x")
	relLog.LogDirectory = "logs/x"
	untrusted := podConfig("x")
	untrusted.Annotations = map[string]string{"io.kubernetes.cri.untrusted-workload": "true"}
	tests := []struct {
		name    string
		cfg     *runtimeapi.PodSandboxConfig
		handler string
		code    codes.Code
	}{
		{"no config", nil, "", codes.InvalidArgument},
		{"no metadata", noMeta, "", codes.InvalidArgument},
		{"empty name", emptyName, "", codes.InvalidArgument},
		{"path in name", badName, "", codes.InvalidArgument},
		{"relative log dir", relLog, "", codes.InvalidArgument},
		{"unknown handler", podConfig("x"), "kata", codes.InvalidArgument},
		{"untrusted without runsc", untrusted, "", codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: tt.cfg, RuntimeHandler: tt.handler})
			if status.Code(err) != tt.code {
				t.Errorf("RunPodSandbox(%s) = %v, want %v", tt.name, err, tt.code)
			}
		})
	}
	assertNoPodLeftovers(t, d)
}

// assertNoPodLeftovers checks that no row, name, pod dir, netns pin or IP
// allocation is left.
func assertNoPodLeftovers(t *testing.T, d *harness.Daemon) {
	t.Helper()
	out, _, err := d.Crispctl("sql", "--csv", "SELECT (SELECT count(*) FROM sandboxes) || '/' || (SELECT count(*) FROM names)")
	if err != nil || !strings.HasSuffix(out, "\n0/0\n") {
		t.Errorf("rows/names left: %q, %v", out, err)
	}
	for _, dir := range []string{d.RunDir + "/pods", d.RunDir + "/netns"} {
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%s not empty: %v", dir, entries)
		}
	}
	for _, m := range mountsUnder(t, d.Dir) {
		if m != d.StateDir+"/storage/overlay" { // the store's own, while crispd runs
			t.Errorf("mount left: %s", m)
		}
	}
	ipam, _ := os.ReadDir(d.Dir + "/cni-ipam/crisp-e2e")
	for _, e := range ipam {
		if net.ParseIP(e.Name()) != nil {
			t.Errorf("IP still allocated: %s", e.Name())
		}
	}
}
