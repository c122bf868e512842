package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
)

// gvUntrusted marks a pod untrusted: it runs on the runsc handler.
var gvUntrusted = map[string]string{"io.kubernetes.cri.untrusted-workload": "true"}

// gvServe is a container command that says what it serves on its log,
// then serves marker as / on port with busybox httpd, in the foreground.
func gvServe(marker string, port int) []string {
	return []string{"sh", "-c", fmt.Sprintf(
		"echo serving %s; mkdir -p /www && echo %s > /www/index.html && exec busybox httpd -f -p %d -h /www", marker, marker, port)}
}

// gvRunPod runs a pod (untrusted with annotations gvUntrusted) and returns its id.
func gvRunPod(ctx context.Context, t *testing.T, d *harness.Daemon, name string, annotations map[string]string) (string, *runtimeapi.PodSandboxConfig) {
	t.Helper()
	pc := podConfig(name)
	pc.Annotations = annotations
	pc.LogDirectory = filepath.Join(d.Dir, "logs", name)
	p, err := d.Runtime().RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
	if err != nil {
		t.Fatalf("RunPodSandbox(%s) = %v", name, err)
	}
	return p.PodSandboxId, pc
}

// gvPodNet returns a ready pod's IP (checked to be in the test subnet) and
// network namespace, and checks it runs on handler.
func gvPodNet(ctx context.Context, t *testing.T, d *harness.Daemon, podID, handler string) (ip, netns string) {
	t.Helper()
	st, err := d.Runtime().PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil {
		t.Fatalf("PodSandboxStatus(%s) = %v", podID, err)
	}
	var info struct {
		Handler string `json:"handler"`
		NetNS   string `json:"netns"`
	}
	_ = json.Unmarshal([]byte(st.Info["info"]), &info)
	ip = st.Status.GetNetwork().GetIp()
	if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || !inSubnet(ip, harness.TestSubnet) ||
		info.Handler != handler || info.NetNS == "" {
		t.Fatalf("PodSandboxStatus(%s) = %v, info %s; want ready on %s with an IP in %s and a netns",
			podID, st.Status, st.Info["info"], handler, harness.TestSubnet)
	}
	return ip, info.NetNS
}

// hostSideIPv4 is what the host kernel holds as IPv4 addresses of eth0 in
// the network namespace at netns (`ip -4 -o addr show dev eth0`).
func hostSideIPv4(t *testing.T, netns string) string {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+netns, "ip", "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter --net=%s ip addr show dev eth0: %v: %s", netns, err, out)
	}
	return string(out)
}

// gvForward is a running `crictl port-forward` of a pod: local port ->
// pod port.
type gvForward struct {
	local map[int]int // pod port -> local port
	out   *harness.SyncBuffer
}

// gvPortForward starts `crictl port-forward` of pod for ports and waits
// until it listens on every local port; it is stopped at cleanup.
func gvPortForward(t *testing.T, d *harness.Daemon, pod string, ports ...int) *gvForward {
	t.Helper()
	f := &gvForward{local: map[int]int{}, out: &harness.SyncBuffer{}}
	args := []string{"port-forward", pod}
	for _, p := range ports {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f.local[p] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		args = append(args, fmt.Sprintf("%d:%d", f.local[p], p))
	}
	crictl := filepath.Join(harness.Bins(t), "crictl")
	ep := "unix://" + d.Socket()
	cmd := exec.Command(crictl, append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep}, args...)...)
	cmd.Stdout, cmd.Stderr = f.out, f.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for _, local := range f.local {
		waitFor(t, "crictl port-forward to listen", func() bool {
			return strings.Contains(f.out.String(), fmt.Sprintf("Forwarding from 127.0.0.1:%d ", local))
		})
	}
	return f
}

// exchange connects to the local end of pod port, sends send, closes its
// sending side and returns all it receives.
func (f *gvForward) exchange(t *testing.T, port int, send string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", f.local[port]), 10*time.Second)
	if err != nil {
		t.Fatalf("dial the local end of port %d: %v (crictl: %s)", port, err, f.out.String())
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if send != "" {
		if _, err := io.WriteString(c, send); err != nil {
			t.Fatalf("send to port %d: %v", port, err)
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Logf("read from port %d: %v", port, err) // what came is checked
	}
	return string(b)
}

// forwardsVia waits until crispd's debug log shows n port-forwards to pod
// ended (the log reaches the test through a pipe, a little after the
// client sees the end) and returns how each went: "bridge" or "netns".
func forwardsVia(t *testing.T, d *harness.Daemon, pod string, n int) []string {
	t.Helper()
	var via []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if via = loggedForwards(d, pod); len(via) >= n {
			break
		}
	}
	return via
}

// loggedForwards is how crispd forwarded to pod, per its log so far.
func loggedForwards(d *harness.Daemon, pod string) []string {
	var via []string
	sc := bufio.NewScanner(strings.NewReader(d.Log.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct{ Msg, Pod, Via string }
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "port forward ended" && l.Pod == pod {
			via = append(via, l.Via)
		}
	}
	return via
}

// noBridgeLeft waits until no `runsc exec` of a port-forward bridge of
// d's is left on the host.
func noBridgeLeft(t *testing.T, d *harness.Daemon) {
	t.Helper()
	waitFor(t, "port-forward bridges to exit", func() bool {
		out, _ := exec.Command("pgrep", "-f", "--root="+d.RunDir+"/runsc .* exec --process .*crisp-portforward-").Output()
		return strings.TrimSpace(string(out)) == ""
	})
}

// A gVisor pod runs on gVisor's own network stack by default: the host
// kernel no longer holds its address, yet it talks to runc pods and other
// gVisor pods over their IPs in both directions, exec and logs work, and
// port-forward reaches its ports through a bridge inside the sandbox (a
// runc pod's through its netns). All of it survives a crispd restart,
// and the pods go without leftovers.
func TestGvisorPodOnNetstack(t *testing.T) {
	harness.RequireRoot(t)
	harness.RequireTool(t, "runsc")
	harness.RequireTool(t, "nsenter")
	d := harness.Start(t) // the built-in runsc handler: network = "sandbox"
	image := withBusybox(t, d)
	rt := d.Runtime()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	step := func(what string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), what) }
	const markerA, markerB, markerR = "hello-from-gvisor-a", "hello-from-gvisor-b", "hello-from-runc"

	a, pcA := gvRunPod(ctx, t, d, "gv-a", gvUntrusted)
	webA := netStartContainer(ctx, t, d, a, pcA, containerConfig("web", image, gvServe(markerA, 8080)...))
	netStartContainer(ctx, t, d, a, pcA, containerConfig("echo", image, "nc", "-ll", "-p", "8090", "-e", "cat"))
	b, pcB := gvRunPod(ctx, t, d, "gv-b", gvUntrusted)
	webB := netStartContainer(ctx, t, d, b, pcB, containerConfig("web", image, gvServe(markerB, 8081)...))
	r, pcR := gvRunPod(ctx, t, d, "rc", nil)
	webR := netStartContainer(ctx, t, d, r, pcR, containerConfig("web", image, gvServe(markerR, 8082)...))
	ipA, nsA := gvPodNet(ctx, t, d, a, "runsc")
	ipB, _ := gvPodNet(ctx, t, d, b, "runsc")
	ipR, nsR := gvPodNet(ctx, t, d, r, "runc")
	t.Logf("gVisor pods %s (%s), %s (%s); runc pod %s (%s)", a[:12], ipA, b[:12], ipB, r[:12], ipR)

	step("pods and containers started")

	// 1. gVisor's netstack serves the pod's address: the host kernel's
	// eth0 in the pod's netns gave it up (in host mode it keeps it, see
	// TestGvisorPodOnHostNetworkMode), while the runc pod's keeps its own.
	if got := hostSideIPv4(t, nsA); strings.Contains(got, ipA) {
		t.Errorf("host kernel still holds %s on eth0 of the gVisor pod's netns: %q; want it taken by gVisor's netstack", ipA, got)
	}
	if got := hostSideIPv4(t, nsR); !strings.Contains(got, ipR+"/") {
		t.Errorf("eth0 of the runc pod's netns = %q, want %s on it", got, ipR)
	}

	step("netstack holds the pod IP")

	// 2. Loopback inside the sandbox, then pod to pod over the pod IPs,
	// both ways: gVisor <-> runc and gVisor <-> gVisor.
	netWaitFetch(ctx, t, d, webA, "http://127.0.0.1:8080/", markerA)
	netWaitFetch(ctx, t, d, webB, "http://127.0.0.1:8081/", markerB)
	netWaitFetch(ctx, t, d, webR, "http://127.0.0.1:8082/", markerR)
	for _, c := range []struct{ from, to, marker string }{
		{webA, net.JoinHostPort(ipR, "8082"), markerR}, // gVisor -> runc
		{webR, net.JoinHostPort(ipA, "8080"), markerA}, // runc -> gVisor
		{webA, net.JoinHostPort(ipB, "8081"), markerB}, // gVisor -> gVisor
		{webB, net.JoinHostPort(ipA, "8080"), markerA},
	} {
		netWaitFetch(ctx, t, d, c.from, "http://"+c.to+"/", c.marker)
	}
	// Negative controls: a port nobody listens on refuses, and one pod's
	// loopback is not another's.
	if body, ok := netFetch(ctx, t, d, webR, "http://"+net.JoinHostPort(ipA, "8089")+"/"); ok {
		t.Errorf("runc pod: wget %s:8089 = %q, want refused (nothing listens there)", ipA, body)
	}
	if body, ok := netFetch(ctx, t, d, webR, "http://127.0.0.1:8080/"); ok || strings.Contains(body, markerA) {
		t.Errorf("runc pod: wget 127.0.0.1:8080 = %q (ok %v), want refused: the gVisor pod answers on its loopback", body, ok)
	}

	step("pod-to-pod traffic")

	// 3. Exec, streaming and not (ExecSync ran wget above): gVisor sees
	// the pod's address on its own eth0.
	out, errOut, err := d.Crictl("exec", webA, "sh", "-c", "echo streamed; ip -4 -o addr show eth0")
	if err != nil || !strings.HasPrefix(out, "streamed\n") || !strings.Contains(out, ipA+"/") {
		t.Errorf("crictl exec (streaming) = %q, %v (%s); want streamed and %s on gVisor's eth0", out, err, errOut, ipA)
	}

	step("streaming exec")

	// 4. Logs.
	waitFor(t, "the gVisor container's log", func() bool {
		out, _, _ := d.Crictl("logs", webA)
		return strings.TrimSpace(out) == "serving "+markerA
	})

	step("logs")

	// 5. Port-forward through crictl (SPDY, as kubelet): HTTP, an echo of
	// more than a buffer with half-close, and a refused port.
	checkForwards := func(what string) {
		t.Helper()
		fA := gvPortForward(t, d, a, 8080, 8090, 8089)
		if got := fA.exchange(t, 8080, "GET / HTTP/1.0\r\n\r\n"); !strings.Contains(got, "200 OK") || !strings.Contains(got, markerA) {
			t.Errorf("%s: HTTP through port-forward to the gVisor pod = %q, want 200 and %s", what, got, markerA)
		}
		big := strings.Repeat("netstack-", 40000)
		if got := fA.exchange(t, 8090, big); got != big {
			t.Errorf("%s: echo through port-forward = %d bytes, want the %d sent back", what, len(got), len(big))
		}
		if got := fA.exchange(t, 8089, "x"); got != "" {
			t.Errorf("%s: port-forward to a closed port = %q, want nothing", what, got)
		}
		waitFor(t, "crictl to report the refused port", func() bool { return strings.Contains(fA.out.String(), "connection refused") })
		fR := gvPortForward(t, d, r, 8082)
		if got := fR.exchange(t, 8082, "GET / HTTP/1.0\r\n\r\n"); !strings.Contains(got, markerR) {
			t.Errorf("%s: HTTP through port-forward to the runc pod = %q, want %s", what, got, markerR)
		}
		noBridgeLeft(t, d)
	}
	checkForwards("before restart")
	// crispd took the bridge for the gVisor pod, and the netns for the runc pod.
	if via := forwardsVia(t, d, a, 3); strings.Join(via, ",") != "bridge,bridge,bridge" {
		t.Errorf("forwards to the gVisor pod went via %v, want 3 via bridge", via)
	}
	if via := forwardsVia(t, d, r, 1); len(via) != 1 || via[0] != "netns" {
		t.Errorf("forwards to the runc pod went via %v, want netns", via)
	}

	step("port-forward")

	// 6. A crispd restart leaves the pods as they were: nothing for the
	// reconciler to repair, traffic and port-forward as before.
	if err := d.Stop(); err != nil {
		t.Fatalf("stop crispd: %v", err)
	}
	d.Restart()
	for _, id := range []string{a, b, r} {
		assertPodState(ctx, t, d, id, runtimeapi.PodSandboxState_SANDBOX_READY)
	}
	if rep := reconcileJSON(t, d, "--dry-run"); len(rep.Actions) != 0 {
		t.Errorf("reconcile after restart would do %s, want nothing", actionList(rep))
	}
	netWaitFetch(ctx, t, d, webR, "http://"+net.JoinHostPort(ipA, "8080")+"/", markerA)
	netWaitFetch(ctx, t, d, webA, "http://"+net.JoinHostPort(ipB, "8081")+"/", markerB)
	checkForwards("after restart")

	step("restart")

	// 7. Stop and remove: CNI teardown, netns and IPs released, runsc
	// knows nothing of the pods any more.
	for _, id := range []string{a, b, r} {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("StopPodSandbox(%s) = %v", id, err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("RemovePodSandbox(%s) = %v", id, err)
		}
	}
	for _, ip := range []string{ipA, ipB, ipR} {
		assertNotAllocated(t, d, ip)
	}
	if listed(t, "runsc", filepath.Join(d.RunDir, "runsc"), a) || listed(t, "runsc", filepath.Join(d.RunDir, "runsc"), b) {
		t.Errorf("runsc still lists a removed pod")
	}
	assertNoPodLeftovers(t, d)
	step("stopped and removed")
}

// In host mode gVisor passes the pod's sockets to the host kernel, which
// keeps the pod's address on eth0 (so TestGvisorPodOnNetstack's check
// tells the modes apart), and port-forward dials in the pod's netns.
func TestGvisorPodOnHostNetworkMode(t *testing.T) {
	harness.RequireRoot(t)
	harness.RequireTool(t, "runsc")
	harness.RequireTool(t, "nsenter")
	d := harness.Start(t, harness.WithTOML("[runtimes.runsc]\nnetwork = \"host\""))
	image := withBusybox(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const marker = "hello-from-gvisor-host-mode"

	a, pcA := gvRunPod(ctx, t, d, "gv-host", gvUntrusted)
	web := netStartContainer(ctx, t, d, a, pcA, containerConfig("web", image, gvServe(marker, 8080)...))
	ip, netns := gvPodNet(ctx, t, d, a, "runsc")
	if got := hostSideIPv4(t, netns); !strings.Contains(got, ip+"/") {
		t.Errorf("eth0 of the host-mode gVisor pod's netns = %q, want %s still on it", got, ip)
	}
	// No wget from inside here: under this runsc's host mode, a busybox
	// wget in the sandbox fails ("error getting response: Resource
	// temporarily unavailable") where the same server answers the host
	// side of the netns; port-forward dials from there. The host kernel
	// lists the listener, as it does any socket of a host-mode pod.
	waitFor(t, "httpd to listen in the pod's netns", func() bool {
		out, _ := exec.Command("nsenter", "--net="+netns, "ss", "-Hltn", "sport", "= :8080").Output()
		return strings.Contains(string(out), "LISTEN")
	})
	f := gvPortForward(t, d, a, 8080)
	// Debian's runsc in host mode lists the listener a moment before its
	// httpd answers: a connection then closes at once, empty (seen once
	// in CI). A few tries tell that from a forward that never works.
	var got string
	tries := 0
	for tries < 5 {
		tries++
		if got = f.exchange(t, 8080, "GET / HTTP/1.0\r\n\r\n"); strings.Contains(got, marker) {
			break
		}
		t.Logf("try %d: HTTP through port-forward = %q", tries, got)
		time.Sleep(time.Second)
	}
	if !strings.Contains(got, marker) {
		t.Errorf("HTTP through port-forward = %q after %d tries, want %s", got, tries, marker)
	}
	via := forwardsVia(t, d, a, tries)
	if len(via) != tries {
		t.Errorf("%d forwards to the host-mode gVisor pod logged, want %d", len(via), tries)
	}
	for _, v := range via {
		if v != "netns" {
			t.Errorf("forwards to the host-mode gVisor pod went via %v, want netns", via)
			break
		}
	}
	if out, errOut, err := d.Crictl("exec", web, "echo", "streamed"); err != nil || out != "streamed\n" {
		t.Errorf("crictl exec (streaming) = %q, %v (%s); want streamed", out, err, errOut)
	}
	if _, err := d.Runtime().StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: a}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Runtime().RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: a}); err != nil {
		t.Fatal(err)
	}
	assertNoPodLeftovers(t, d)
}
