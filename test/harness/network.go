package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The end-to-end tests' pod network: a bridge of their own, no masquerade,
// no gateway address on the host (so no host route and no IP forwarding),
// no default route in pods. A test packet can only reach loopback or
// another pod of the same test.
const (
	TestBridge    = "crispe2e0"
	TestSubnet    = "10.213.251.0/24"
	testBridgeMAC = "02:63:72:65:32:65" // locally administered
)

// testConfList writes the test conflist under dir and returns its path.
func testConfList(t testing.TB, dir string) string {
	t.Helper()
	ipam := filepath.Join(dir, "cni-ipam")
	body := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "crisp-e2e", "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": false, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]]}}]}`, TestBridge, ipam, TestSubnet)
	path := filepath.Join(dir, "crisp-e2e.conflist")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	ensureBridge(t)
	return path
}

// ensureBridge makes the test bridge with a fixed MAC: without a gateway
// address the bridge plugin never fixes the MAC, and its CHECK of earlier
// pods fails once the MAC follows a later port. Deleted at test end.
func ensureBridge(t testing.TB) {
	t.Helper()
	ensureUnreachable(t)
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
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "link", "del", TestBridge).CombinedOutput(); err != nil {
			t.Errorf("ip link del %s: %v: %s", TestBridge, err, out)
		}
	})
}

// ensureUnreachable routes the test subnet nowhere on the host, so that
// nothing on the host (a test, or a tool like critest) can send a packet
// for a pod address out through the default route.
func ensureUnreachable(t testing.TB) {
	t.Helper()
	out, err := exec.Command("ip", "route", "show", TestSubnet).Output()
	if err == nil && len(out) > 0 {
		return
	}
	if out, err := exec.Command("ip", "route", "add", "unreachable", TestSubnet).CombinedOutput(); err != nil {
		t.Fatalf("ip route add unreachable %s: %v: %s", TestSubnet, err, out)
	}
}
