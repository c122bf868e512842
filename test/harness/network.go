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

// The end-to-end tests' pod network: a bridge of their own, no masquerade,
// no gateway address on the host (so no host route and no IP forwarding),
// no default route in pods. A test packet can only reach loopback or
// another pod of the same test.
//
// go test runs test packages in parallel, so each test process takes a
// network of its own (bridge crispe2e<n>, subnet 10.213.<251-n>.0/24): the
// first n whose lock file it can hold. Two processes never share a bridge,
// nor hand out the same address, nor delete each other's bridge.
var (
	TestBridge    = "crispe2e0"
	TestSubnet    = "10.213.251.0/24"
	testBridgeMAC = "02:63:72:65:32:65" // locally administered
	netLock       *os.File              // held for the life of the process
)

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
		TestBridge = fmt.Sprintf("crispe2e%d", n)
		TestSubnet = fmt.Sprintf("10.213.%d.0/24", 251-n)
		testBridgeMAC = fmt.Sprintf("02:63:72:65:32:%02x", 0x65+n)
		return
	}
}

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
