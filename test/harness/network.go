package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// The end-to-end tests' pod network: a bridge of their own holding the
// subnet's first address (so the host reaches its pods, and hostPort
// mappings work), no masquerade, no default route in pods. A test packet
// can only reach loopback, the host's bridge address, or another pod of
// the same test.
//
// go test runs test packages in parallel, so each test process takes a
// network of its own (bridge crispe2e<n>, subnet 10.213.<251-n>.0/24, and
// two spare subnets for tests of crisp's built-in bridge): the first n
// whose lock file it can hold. Two processes never share a bridge, nor hand
// out the same address, nor delete each other's bridge.
var (
	TestBridge    = "crispe2e0"
	TestSubnet    = "10.213.251.0/24"
	testBridgeMAC = "02:63:72:65:32:65" // locally administered
	testNet       = 0
	netLock       *os.File // held for the life of the process
)

// SpareSubnet is this process's spare subnet i (0 or 1), for a network a
// test makes itself; the safety route covers it too (EnsureUnreachable).
func SpareSubnet(i int) string { return fmt.Sprintf("10.213.%d.0/24", 243-8*i-testNet) }

// SpareBridge is the bridge name for a network a test makes itself.
func SpareBridge() string { return fmt.Sprintf("crispe2eb%d", testNet) }

const testNetworks = 8

func init() {
	if os.Geteuid() != 0 {
		return // RequireRoot skips every test that would use it
	}
	for n := 0; n < testNetworks; n++ {
		f, err := os.OpenFile(fmt.Sprintf("/run/crisp-e2e-net-%d.lock", n), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close()
			continue
		}
		netLock = f
		testNet = n
		TestBridge = fmt.Sprintf("crispe2e%d", n)
		TestSubnet = fmt.Sprintf("10.213.%d.0/24", 251-n)
		testBridgeMAC = fmt.Sprintf("02:63:72:65:32:%02x", 0x65+n)
		return
	}
}

// testNetworkTOML writes the test conflist into a config directory under
// dir and returns crispd's [network] section for it: that directory, and
// no built-in bridge to fall back on.
func testNetworkTOML(t testing.TB, dir string) string {
	t.Helper()
	confDir := filepath.Join(dir, "net.d")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	WriteTestConfList(t, filepath.Join(confDir, "10-crisp-e2e.conflist"), "crisp-e2e")
	return fmt.Sprintf("[network]\nconf_dir = %q\nfallback = \"none\"\n", confDir)
}

// WriteTestConfList writes the test network's conflist, named name, to
// path: bridge TestBridge with the gateway address, host-local on
// TestSubnet (no routes), and portmap.
func WriteTestConfList(t testing.TB, path, name string) {
	t.Helper()
	ipam := filepath.Join(filepath.Dir(path), "..", "cni-ipam")
	body := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}`, name, TestBridge, filepath.Clean(ipam), TestSubnet)
	ensureBridge(t)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ensureBridge makes the test bridge with a fixed MAC, so that the bridge
// plugin's CHECK of earlier pods never sees it change as ports come and
// go. Deleted at test end.
func ensureBridge(t testing.TB) {
	t.Helper()
	EnsureUnreachable(t)
	if _, err := net.InterfaceByName(TestBridge); err == nil {
		return
	}
	for _, args := range [][]string{
		{"link", "add", TestBridge, "type", "bridge"},
		{"link", "set", TestBridge, "address", testBridgeMAC},
		{"link", "set", TestBridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() { DeleteLink(t, TestBridge) })
}

// DeleteLink deletes a network device if it exists.
func DeleteLink(t testing.TB, name string) {
	if _, err := net.InterfaceByName(name); err != nil {
		return
	}
	if out, err := exec.Command("ip", "link", "del", name).CombinedOutput(); err != nil {
		t.Errorf("ip link del %s: %v: %s", name, err, out)
	}
}

// unreachableMetric puts the safety routes behind the bridge's own route
// to its subnet (metric 0), which exists only while the bridge holds its
// address: the host reaches its pods over the bridge, and a packet for a
// test subnet goes nowhere else, ever.
const unreachableMetric = "4242"

// EnsureUnreachable routes this process's test subnets nowhere on the
// host, so that nothing on the host (a test, or a tool like critest) can
// send a packet for a pod address out through the default route.
func EnsureUnreachable(t testing.TB) {
	t.Helper()
	for _, subnet := range []string{TestSubnet, SpareSubnet(0), SpareSubnet(1)} {
		// A route of an older harness, at metric 0, would beat the bridge's.
		_ = exec.Command("ip", "route", "del", "unreachable", subnet, "metric", "0").Run()
		if out, err := exec.Command("ip", "route", "replace", "unreachable", subnet, "metric", unreachableMetric).CombinedOutput(); err != nil {
			t.Fatalf("ip route replace unreachable %s: %v: %s", subnet, err, out)
		}
	}
}
