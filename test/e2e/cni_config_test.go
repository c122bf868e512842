package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
)

// networkCondition returns crispd's NetworkReady condition.
func networkCondition(ctx context.Context, t *testing.T, d *harness.Daemon) *runtimeapi.RuntimeCondition {
	t.Helper()
	resp, err := d.Runtime().Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatalf("Status() = %v", err)
	}
	for _, c := range resp.GetStatus().GetConditions() {
		if c.Type == runtimeapi.NetworkReady {
			return c
		}
	}
	t.Fatalf("Status() has no NetworkReady condition: %v", resp.Status)
	return nil
}

// podIPIn runs a pod and returns its IP, checking that it is in subnet.
func podIPIn(ctx context.Context, t *testing.T, d *harness.Daemon, pc *runtimeapi.PodSandboxConfig, subnet string) (podID, ip string) {
	t.Helper()
	run, err := d.Runtime().RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
	if err != nil {
		t.Fatalf("RunPodSandbox(%s) = %v", pc.Metadata.Name, err)
	}
	st, err := d.Runtime().PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: run.PodSandboxId})
	if err != nil {
		t.Fatalf("PodSandboxStatus(%s) = %v", pc.Metadata.Name, err)
	}
	ip = st.GetStatus().GetNetwork().GetIp()
	if !inSubnet(ip, subnet) {
		t.Fatalf("pod %s has IP %q, want one in %s", pc.Metadata.Name, ip, subnet)
	}
	return run.PodSandboxId, ip
}

// hostGet fetches url from the host itself, retrying for up to 20 s while
// the pod's server starts, and returns the body.
func hostGet(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	var lastErr error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := client.Get(url)
		if err != nil {
			lastErr = err
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK {
			return strings.TrimSpace(string(b))
		}
		lastErr = fmt.Errorf("status %s, read error %v", resp.Status, err)
	}
	t.Fatalf("GET %s from the host: %v", url, lastErr)
	return ""
}

// removeEveryPod stops and removes every pod through the CRI, failing
// the test on a removal that fails.
func removeEveryPod(ctx context.Context, t *testing.T, d *harness.Daemon) {
	t.Helper()
	resp, err := d.Runtime().ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range resp.Items {
		d.Runtime().StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id})
		if _, err := d.Runtime().RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Fatalf("RemovePodSandbox(%s) = %v", p.Id, err)
		}
	}
}

// freePort is a TCP port on 127.0.0.1 that nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The host reaches its pods over the bridge, which holds the subnet's
// first address, and a hostPort mapping forwards 127.0.0.1:<hostPort> to
// the pod (portmap), until the pod goes.
func TestHostReachesPods(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	image := withBusybox(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hostPort := freePort(t)
	pc := podConfig("reach")
	pc.LogDirectory = filepath.Join(d.Dir, "logs", "reach")
	pc.PortMappings = []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8080, HostPort: int32(hostPort)}}
	podID, ip := podIPIn(ctx, t, d, pc, harness.TestSubnet)
	netStartContainer(ctx, t, d, podID, pc, containerConfig("web", image, netServeMarker("reached", 8080)...))

	if got := hostGet(t, "http://"+net.JoinHostPort(ip, "8080")+"/"); got != "reached" {
		t.Errorf("GET the pod's IP from the host = %q, want reached", got)
	}
	if got := hostGet(t, fmt.Sprintf("http://127.0.0.1:%d/", hostPort)); got != "reached" {
		t.Errorf("GET 127.0.0.1:%d (hostPort) = %q, want reached", hostPort, got)
	}
	if _, err := d.Runtime().StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox() = %v", err)
	}
	if _, err := d.Runtime().RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox() = %v", err)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", hostPort), time.Second); err == nil {
		c.Close()
		t.Errorf("hostPort %d still forwards after the pod was removed", hostPort)
	}
	assertNoPodLeftovers(t, d)
}

// With fallback = none, crispd waits for the node's CNI config: NetworkReady
// false with a reason, pods refused; a conflist written into the watched
// directory afterwards is used for the next pod, and the pod stays on its
// network when the file is replaced.
func TestCNIConfigDirWatched(t *testing.T) {
	harness.RequireRoot(t)
	harness.EnsureUnreachable(t)
	confDir := filepath.Join(t.TempDir(), "net.d")
	d := harness.Start(t, harness.WithNetwork(fmt.Sprintf("[network]\nconf_dir = %q\nfallback = \"none\"\n", confDir)))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	cond := networkCondition(ctx, t, d)
	if cond.Status || cond.Reason != "NoNetworkConfig" || !strings.Contains(cond.Message, confDir) {
		t.Errorf("NetworkReady with an empty %s = %v %q %q, want false, NoNetworkConfig, naming the directory",
			confDir, cond.Status, cond.Reason, cond.Message)
	}
	_, err := d.Runtime().RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("early")})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("RunPodSandbox() before any network config = %v, want FailedPrecondition", err)
	}
	assertNoPodLeftovers(t, d)

	harness.WriteTestConfList(t, filepath.Join(confDir, "50-late.conflist"), "late")
	deadline := time.Now().Add(10 * time.Second)
	for cond = networkCondition(ctx, t, d); !cond.Status; cond = networkCondition(ctx, t, d) {
		if time.Now().After(deadline) {
			t.Fatalf("NetworkReady still %v %q %q 10 s after the conflist was written", cond.Status, cond.Reason, cond.Message)
		}
		time.Sleep(50 * time.Millisecond)
	}
	first, _ := podIPIn(ctx, t, d, podConfig("first"), harness.TestSubnet)
	cached := func(network, podID string) bool {
		_, err := os.Stat(filepath.Join(d.StateDir, "cni", "cache", "results", network+"-"+podID+"-eth0"))
		return err == nil
	}
	if !cached("late", first) {
		t.Errorf("pod first is not attached to network late")
	}

	// A file earlier by name takes over for new pods.
	harness.WriteTestConfList(t, filepath.Join(confDir, "10-early.conflist"), "early")
	var second string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		id, _ := podIPIn(ctx, t, d, podConfig(fmt.Sprintf("second-%d", time.Now().UnixNano())), harness.TestSubnet)
		if cached("early", id) {
			second = id
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pods still attached to network late 10 s after 10-early.conflist was written")
		}
	}
	// Each pod leaves its own network when removed, whatever the directory
	// says now.
	if err := os.Remove(filepath.Join(confDir, "10-early.conflist")); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{first, second} {
		if _, err := d.Runtime().StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("StopPodSandbox(%s) = %v", id, err)
		}
	}
	if cached("late", first) || cached("early", second) {
		t.Errorf("after StopPodSandbox a pod is still attached (late: %v, early: %v)", cached("late", first), cached("early", second))
	}
	removeEveryPod(ctx, t, d)
	assertNoPodLeftovers(t, d)
}

// The built-in bridge gives pods addresses from the configured subnet until
// kubelet sends the node's pod CIDR (UpdateRuntimeConfig), then from that
// CIDR, also after a restart of crispd, which kubelet does not tell again.
// Run with egress = none: pods get no default route.
func TestBuiltInBridgeTakesPodCIDR(t *testing.T) {
	harness.RequireRoot(t)
	harness.EnsureUnreachable(t)
	bridge, first, second := harness.SpareBridge(), harness.SpareSubnet(0), harness.SpareSubnet(1)
	t.Cleanup(func() { harness.DeleteLink(t, bridge) })
	d := harness.Start(t, harness.WithNetwork(fmt.Sprintf(
		"[network]\nconf_dir = %q\nfallback = \"bridge\"\n[network.bridge]\nname = %q\nsubnet = %q\negress = \"none\"\n",
		filepath.Join(t.TempDir(), "net.d"), bridge, first)))
	image := withBusybox(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if cond := networkCondition(ctx, t, d); !cond.Status {
		t.Fatalf("NetworkReady on the built-in bridge = false %q %q", cond.Reason, cond.Message)
	}
	podConfigLogged := func(name string) *runtimeapi.PodSandboxConfig {
		pc := podConfig(name)
		pc.LogDirectory = filepath.Join(d.Dir, "logs", name)
		return pc
	}
	podIPIn(ctx, t, d, podConfigLogged("before"), first)

	if _, err := d.Runtime().UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{
		NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: second}}}); err != nil {
		t.Fatalf("UpdateRuntimeConfig(%s) = %v", second, err)
	}
	pc := podConfigLogged("after")
	podID, ip := podIPIn(ctx, t, d, pc, second)
	ctr := netStartContainer(ctx, t, d, podID, pc, containerConfig("web", image, netServeMarker("bridged", 8080)...))
	if got := hostGet(t, "http://"+net.JoinHostPort(ip, "8080")+"/"); got != "bridged" {
		t.Errorf("GET the pod's IP from the host = %q, want bridged", got)
	}
	r, err := d.Runtime().ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: []string{"cat", "/proc/net/route"}, Timeout: 10})
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("ExecSync(cat /proc/net/route) = %v, %v", r, err)
	}
	for _, line := range strings.Split(string(r.Stdout), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "00000000" {
			t.Errorf("a pod with egress = none has a default route: %q", line)
		}
	}
	if out, _, err := d.Crispctl("sql", "--csv", "SELECT value FROM node_state WHERE key = 'pod_cidr'"); err != nil || !strings.Contains(out, second) {
		t.Errorf("node_state pod_cidr = %q, %v; want %s", out, err, second)
	}

	if err := d.Stop(); err != nil {
		t.Fatalf("stop crispd: %v", err)
	}
	d.Restart()
	podIPIn(ctx, t, d, podConfigLogged("restarted"), second)
	removeEveryPod(ctx, t, d)
	assertNoPodLeftovers(t, d)
	ipam, _ := os.ReadDir(filepath.Join(d.StateDir, "cni", "ipam", "crisp"))
	for _, e := range ipam {
		if net.ParseIP(e.Name()) != nil {
			t.Errorf("IP still allocated on the built-in bridge: %s", e.Name())
		}
	}
}
