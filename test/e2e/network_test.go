package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
)

// netServeMarker is a container command that serves marker as / on port with
// busybox httpd, in the foreground. The test image links no httpd applet,
// so it is called through busybox itself.
func netServeMarker(marker string, port int) []string {
	return []string{"sh", "-c", fmt.Sprintf(
		"mkdir -p /www && echo %s > /www/index.html && exec busybox httpd -f -p %d -h /www", marker, port)}
}

// netStartContainer creates and starts cc in the pod and returns its id.
func netStartContainer(ctx context.Context, t *testing.T, d *harness.Daemon, podID string, pc *runtimeapi.PodSandboxConfig, cc *runtimeapi.ContainerConfig) string {
	t.Helper()
	rt := d.Runtime()
	c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cc, SandboxConfig: pc})
	if err != nil {
		t.Fatalf("CreateContainer(%s) = %v", cc.Metadata.Name, err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatalf("StartContainer(%s) = %v", cc.Metadata.Name, err)
	}
	return c.ContainerId
}

// netFetch runs busybox wget for url in container id and returns the body and
// whether wget succeeded. No -T: Debian's static busybox wget crashes with
// it; the ExecSync timeout bounds the call instead.
func netFetch(ctx context.Context, t *testing.T, d *harness.Daemon, id, url string) (string, bool) {
	t.Helper()
	r, err := d.Runtime().ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id,
		Cmd: []string{"wget", "-q", "-O", "-", url}, Timeout: 10})
	if err != nil {
		t.Fatalf("ExecSync(wget %s) = %v", url, err)
	}
	return string(r.Stdout), r.ExitCode == 0
}

// netWaitFetch polls url from container id until it answers with marker, for
// at most 20 s (httpd starting), and fails the test otherwise.
func netWaitFetch(ctx context.Context, t *testing.T, d *harness.Daemon, id, url, marker string) {
	t.Helper()
	var body string
	var ok bool
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if body, ok = netFetch(ctx, t, d, id, url); ok && strings.TrimSpace(body) == marker {
			return
		}
	}
	t.Fatalf("wget %s = %q (ok %v), want %q", url, body, ok, marker)
}

// netPodIP returns the pod's IP, checking it is ready, on runc, and inside the
// test subnet, so that traffic to it stays on the test bridge.
func netPodIP(ctx context.Context, t *testing.T, d *harness.Daemon, podID string) string {
	t.Helper()
	st, err := d.Runtime().PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil {
		t.Fatalf("PodSandboxStatus(%s) = %v", podID, err)
	}
	ip := net.ParseIP(st.Status.GetNetwork().GetIp())
	_, subnet, _ := net.ParseCIDR(harness.TestSubnet)
	if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || ip == nil || ip.To4() == nil || !subnet.Contains(ip) {
		t.Fatalf("PodSandboxStatus(%s) = %v, want ready with an IPv4 in %s", podID, st.Status, harness.TestSubnet)
	}
	var info map[string]any
	json.Unmarshal([]byte(st.Info["info"]), &info)
	if info["handler"] != "runc" || info["trustReason"] != "default" {
		t.Errorf("pod %s verbose info = %v, want handler runc, reason default", podID, info)
	}
	return ip.String()
}

// A pod's containers share one network namespace: they reach each other on
// localhost. Each pod has its own CNI IP on the test bridge, and two pods
// reach each other by IP, while one pod's localhost is not the other's.
func TestPodNetworking(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	image := withBusybox(t, d)
	rt := d.Runtime()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const markerA, markerB = "hello-from-a", "hello-from-b"

	// Pod A: a server and a client container.
	pcA := podConfig("net-a")
	pcA.LogDirectory = filepath.Join(d.Dir, "logs", "net-a")
	a, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcA})
	if err != nil {
		t.Fatalf("RunPodSandbox(net-a) = %v", err)
	}
	serverA := netStartContainer(ctx, t, d, a.PodSandboxId, pcA, containerConfig("server", image, netServeMarker(markerA, 8080)...))
	clientA := netStartContainer(ctx, t, d, a.PodSandboxId, pcA, containerConfig("client", image, "sleep", "600"))

	// 1. Containers of one pod reach each other on localhost.
	netWaitFetch(ctx, t, d, clientA, "http://127.0.0.1:8080/", markerA)

	// 2. The pod has a CNI IP in the test subnet.
	ipA := netPodIP(ctx, t, d, a.PodSandboxId)
	t.Logf("pod A %s has IP %s", a.PodSandboxId[:12], ipA)

	// Pod B: one container, serving its own marker on another port.
	pcB := podConfig("net-b")
	pcB.LogDirectory = filepath.Join(d.Dir, "logs", "net-b")
	b, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcB})
	if err != nil {
		t.Fatalf("RunPodSandbox(net-b) = %v", err)
	}
	ctrB := netStartContainer(ctx, t, d, b.PodSandboxId, pcB, containerConfig("main", image, netServeMarker(markerB, 8081)...))
	ipB := netPodIP(ctx, t, d, b.PodSandboxId)
	t.Logf("pod B %s has IP %s", b.PodSandboxId[:12], ipB)
	if ipA == ipB {
		t.Fatalf("pods A and B share the IP %s", ipA)
	}

	// 3. Pod B reaches pod A by IP, and pod A reaches pod B.
	netWaitFetch(ctx, t, d, ctrB, "http://"+net.JoinHostPort(ipA, "8080")+"/", markerA)
	netWaitFetch(ctx, t, d, ctrB, "http://127.0.0.1:8081/", markerB) // B's own server is up
	netWaitFetch(ctx, t, d, clientA, "http://"+net.JoinHostPort(ipB, "8081")+"/", markerB)

	// 4. A pod's localhost is its own: A's port is closed on B's loopback,
	// and B's on A's.
	if body, ok := netFetch(ctx, t, d, ctrB, "http://127.0.0.1:8080/"); ok || strings.Contains(body, markerA) {
		t.Errorf("pod B: wget 127.0.0.1:8080 = %q (ok %v), want refused: pod A's server answers on pod B's localhost", body, ok)
	}
	if body, ok := netFetch(ctx, t, d, clientA, "http://127.0.0.1:8081/"); ok || strings.Contains(body, markerB) {
		t.Errorf("pod A: wget 127.0.0.1:8081 = %q (ok %v), want refused: pod B's server answers on pod A's localhost", body, ok)
	}
	// Nor is pod A's server reachable on B's own IP.
	if body, ok := netFetch(ctx, t, d, ctrB, "http://"+net.JoinHostPort(ipB, "8080")+"/"); ok || strings.Contains(body, markerA) {
		t.Errorf("pod B: wget %s:8080 = %q (ok %v), want refused", ipB, body, ok)
	}

	for _, id := range []string{serverA, clientA, ctrB} {
		if _, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
			t.Errorf("StopContainer(%s) = %v", id, err)
		}
	}
	for _, id := range []string{a.PodSandboxId, b.PodSandboxId} {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("StopPodSandbox(%s) = %v", id, err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("RemovePodSandbox(%s) = %v", id, err)
		}
	}
	assertNoPodLeftovers(t, d)
}
