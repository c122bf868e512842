package network

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPodToPod(t *testing.T) {
	requireNetwork(t)
	forward := readFile(t, "/proc/sys/net/ipv4/ip_forward")
	t.Cleanup(func() {
		if got := readFile(t, "/proc/sys/net/ipv4/ip_forward"); got != forward {
			t.Errorf("net.ipv4.ip_forward = %q after the test, want it untouched (%q)", got, forward)
		}
	})
	m := newTestManager(t, testConfList(testIPAM(testSubnet, t.TempDir())))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	a, ipsA := testPod(t, m, "pod-a")
	b, ipsB := testPod(t, m, "pod-b")
	subnet := netip.MustParsePrefix(testSubnet)
	for _, ips := range [][]string{ipsA, ipsB} {
		if len(ips) != 1 || !subnet.Contains(netip.MustParseAddr(ips[0])) {
			t.Fatalf("Setup() ips = %v, want one address in %s", ips, testSubnet)
		}
	}
	if ipsA[0] == ipsB[0] {
		t.Fatalf("both pods got %s", ipsA[0])
	}
	allocs, err := m.Allocations()
	if err != nil {
		t.Fatalf("Allocations() error = %v", err)
	}
	if want := map[string]string{ipsA[0]: a.PodID, ipsB[0]: b.PodID}; !maps.Equal(allocs, want) {
		t.Errorf("Allocations() = %v, want %v", allocs, want)
	}
	if got := nsLinks(t, a.NetNS); !slices.Contains(got, "eth0") || !slices.Contains(got, "lo") {
		t.Errorf("links in pod a = %v, want lo and eth0", got)
	}
	noDefaultRoute(t, a.NetNS)
	inNS(t, a.NetNS, func() error {
		eth0, err := net.InterfaceByName("eth0")
		if err == nil {
			t.Logf("pod a eth0 mtu %d", eth0.MTU)
		}
		return err
	})

	// A → B over the bridge, and lo inside A still works.
	dialEcho(t, a.NetNS, echoOnce(t, b.NetNS, net.JoinHostPort(ipsB[0], "0")))
	dialEcho(t, a.NetNS, echoOnce(t, a.NetNS, "127.0.0.1:0"))

	for _, p := range []Attachment{a, b} {
		if err := m.Check(ctx, p); err != nil {
			t.Errorf("Check(%s) error = %v", p.PodID, err)
		}
	}

	start := time.Now()
	if err := m.Teardown(ctx, a); err != nil {
		t.Fatalf("Teardown(a) error = %v", err)
	}
	t.Logf("DEL took %v", time.Since(start))
	if err := m.Teardown(ctx, a); err != nil {
		t.Errorf("second Teardown(a) error = %v, want nil", err)
	}
	if got := nsLinks(t, a.NetNS); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("links in pod a after Teardown = %v, want [lo]", got)
	}
	if allocs, _ := m.Allocations(); !maps.Equal(allocs, map[string]string{ipsB[0]: b.PodID}) {
		t.Errorf("Allocations() after Teardown(a) = %v, want only b's", allocs)
	}

	// Break b behind CNI's back: CHECK must notice.
	if _, err := exec.LookPath("nsenter"); err == nil {
		if out, err := exec.Command("nsenter", "--net="+b.NetNS, "ip", "link", "del", "eth0").CombinedOutput(); err != nil {
			t.Fatalf("delete eth0 in pod b: %v: %s", err, out)
		}
		if err := m.Check(ctx, b); err == nil {
			t.Errorf("Check(b) without eth0 = nil, want an error")
		} else {
			t.Logf("Check(b) without eth0: %v", err)
		}
	}

	// DEL after the namespace is gone (crash recovery) still frees the IP.
	if err := m.RemoveNetNS(b.NetNS); err != nil {
		t.Fatalf("RemoveNetNS(b) error = %v", err)
	}
	start = time.Now()
	if err := m.Teardown(ctx, b); err != nil {
		t.Fatalf("Teardown(b) after RemoveNetNS error = %v", err)
	}
	t.Logf("DEL without netns took %v", time.Since(start))
	if allocs, _ := m.Allocations(); len(allocs) != 0 {
		t.Errorf("Allocations() after both teardowns = %v, want none", allocs)
	}
	if isMounted(t, b.NetNS) {
		t.Errorf("%s still mounted", b.NetNS)
	}
	if err := m.Check(ctx, b); err == nil {
		t.Errorf("Check(b) after Teardown = nil, want an error")
	}
}

func TestSetupFailureUndoes(t *testing.T) {
	requireNetwork(t)
	tests := []struct {
		name   string
		plugin string // needed besides bridge and host-local
		conf   func(dataDir string) []byte
	}{
		{"malformed subnet", "", func(d string) []byte {
			return testConfList(testIPAM("10.213.250.0/33", d))
		}},
		{"plugin after bridge fails", "tuning", func(d string) []byte {
			// The IP and veth exist by the time tuning fails, inside the
			// pod's own namespace, on a sysctl that does not exist.
			return testConfList(testIPAM(testSubnet, d),
				`{"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.crisp_no_such_knob": "1"}}`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.plugin != "" && !isFile(DefaultPluginDir+"/"+tt.plugin) {
				need(t, "no "+tt.plugin+" plugin")
			}
			m := newTestManager(t, tt.conf(t.TempDir()))
			path, err := m.NewNetNS("pod-fail")
			if err != nil {
				t.Fatalf("NewNetNS() error = %v", err)
			}
			t.Cleanup(func() { _ = m.RemoveNetNS(path) })
			a := Attachment{PodID: "pod-fail", Name: "fail", Namespace: "crisp-test", UID: "u", NetNS: path}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			ips, err := m.Setup(ctx, a)
			if err == nil {
				t.Fatalf("Setup() = %v, nil; want an error", ips)
			}
			t.Logf("Setup() error = %v", err)
			if allocs, err := m.Allocations(); err != nil || len(allocs) != 0 {
				t.Errorf("Allocations() after failed Setup = %v, %v; want none", allocs, err)
			}
			if got := nsLinks(t, path); !slices.Equal(got, []string{"lo"}) {
				t.Errorf("links in pod after failed Setup = %v, want [lo]", got)
			}
			if got := bridgePorts(t); len(got) != 0 {
				t.Errorf("%s ports after failed Setup = %v, want none", testBridge, got)
			}
		})
	}
}

// noDefaultRoute fails the test if the pod at path has any route other than
// its connected route to the test subnet.
func noDefaultRoute(t *testing.T, path string) {
	t.Helper()
	inNS(t, path, func() error {
		// thread-self: /proc/net follows the process's main thread, not
		// this one, which is the thread inside the pod's namespace.
		b, err := os.ReadFile("/proc/thread-self/net/route")
		if err != nil {
			return err
		}
		// Header + one line: 10.213.250.0 on eth0 (little-endian hex 00FAD50A).
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")[1:]
		if len(lines) != 1 || strings.Fields(lines[0])[1] != "00FAD50A" {
			t.Errorf("routes in pod = %q, want only %s", lines, testSubnet)
		}
		return nil
	})
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestConcurrentPods(t *testing.T) {
	requireNetwork(t)
	m := newTestManager(t, testConfList(testIPAM(testSubnet, t.TempDir())))
	const n = 6
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		pods = map[string]Attachment{}
		ips  = map[string]string{}
	)
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("pod-%d", i)
			path, err := m.NewNetNS(id)
			if err != nil {
				t.Errorf("NewNetNS(%s) error = %v", id, err)
				return
			}
			a := Attachment{PodID: id, Name: id, Namespace: "crisp-test", UID: id, NetNS: path}
			got, err := m.Setup(context.Background(), a)
			mu.Lock()
			defer mu.Unlock()
			pods[id] = a
			if err != nil || len(got) != 1 {
				t.Errorf("Setup(%s) = %v, %v; want one IP", id, got, err)
				return
			}
			ips[got[0]] = id
		})
	}
	wg.Wait()
	t.Cleanup(func() { // in case the teardown below does not run
		for _, a := range pods {
			_ = m.Teardown(context.Background(), a)
			_ = m.RemoveNetNS(a.NetNS)
		}
	})
	if len(ips) != n {
		t.Fatalf("distinct IPs = %v, want %d", ips, n)
	}
	if allocs, err := m.Allocations(); err != nil || !maps.Equal(allocs, ips) {
		t.Errorf("Allocations() = %v, %v; want %v", allocs, err, ips)
	}
	for _, a := range pods {
		wg.Go(func() {
			if err := m.Teardown(context.Background(), a); err != nil {
				t.Errorf("Teardown(%s) error = %v", a.PodID, err)
			}
			if err := m.RemoveNetNS(a.NetNS); err != nil {
				t.Errorf("RemoveNetNS(%s) error = %v", a.PodID, err)
			}
		})
	}
	wg.Wait()
	if allocs, _ := m.Allocations(); len(allocs) != 0 {
		t.Errorf("Allocations() after teardown = %v, want none", allocs)
	}
	if pins, _ := m.Pins(); len(pins) != 0 {
		t.Errorf("Pins() after teardown = %v, want none", pins)
	}
	if got := bridgePorts(t); len(got) != 0 {
		t.Errorf("%s ports after teardown = %v, want none", testBridge, got)
	}
}
