package network

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// The tests' own network. Its bridge has no address (isGateway false), so
// the host gets no route to the subnet and net.ipv4.ip_forward is left
// alone; pods have only their connected /24 route, no default route, and no
// masquerade. A test packet can therefore reach only loopback or another
// pod of the same test.
const (
	testBridge = "crisptest0"
	testNet    = "crisptest"
	testSubnet = "10.213.250.0/24"
	testGW     = "10.213.250.1"
	// A locally administered unicast MAC for the test bridge.
	testBridgeMAC = "02:63:72:69:73:70"
)

// need skips the test with a loud reason when why is not empty, or fails
// it when the CI environment variable is set, since CI must run everything.
func need(t *testing.T, why string) {
	t.Helper()
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but %s cannot run: %s", t.Name(), why)
	}
	fmt.Fprintf(os.Stderr, "!!! SKIP %s: %s (runs as root with CNI plugins in %s)\n", t.Name(), why, DefaultPluginDir)
	t.Skip(why)
}

// requireNetwork needs root and Debian's CNI plugins.
func requireNetwork(t *testing.T) {
	t.Helper()
	switch {
	case os.Geteuid() != 0:
		need(t, "not root")
	case !isFile(DefaultPluginDir + "/bridge"):
		need(t, DefaultPluginDir+"/bridge is missing")
	case !isFile(DefaultPluginDir + "/host-local"):
		need(t, DefaultPluginDir+"/host-local is missing")
	}
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// testConfList is the test network: bridge + host-local with ipam (a JSON
// object body) and the given extra plugins appended.
func testConfList(ipam string, extra ...string) []byte {
	plugins := append([]string{fmt.Sprintf(`{"type": "bridge", "bridge": %q, "isGateway": false,
	  "ipMasq": false, "hairpinMode": true, "ipam": {%s}}`, testBridge, ipam)}, extra...)
	return fmt.Appendf(nil, `{"cniVersion": "1.0.0", "name": %q, "plugins": [%s]}`,
		testNet, strings.Join(plugins, ",\n"))
}

// confDir returns a new config directory holding conf alone.
func confDir(t *testing.T, conf []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "10-test.conflist"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testIPAM is host-local on the test subnet, keeping its files in dataDir.
func testIPAM(subnet, dataDir string) string {
	return fmt.Sprintf(`"type": "host-local", "dataDir": %q,
	  "ranges": [[{"subnet": %q, "gateway": %q}]]`, dataDir, subnet, testGW)
}

// newTestManager builds a Manager over conf with its cache and pins in a
// temporary directory, and deletes the test bridge when the test ends
// (registered first, so it runs after every pod's own cleanup).
func newTestManager(t *testing.T, conf []byte) *Manager {
	t.Helper()
	t.Cleanup(func() {
		if _, err := net.InterfaceByName(testBridge); err == nil {
			if out, err := exec.Command("ip", "link", "del", testBridge).CombinedOutput(); err != nil {
				t.Errorf("ip link del %s: %v: %s", testBridge, err, out)
			}
		}
	})
	// The bridge plugin fixes the bridge's MAC only when it gives the bridge
	// an address (isGateway). Without that the MAC follows the lowest port's
	// and the plugin's CHECK of an earlier pod fails once a later pod joins,
	// so the test makes the bridge itself, with a MAC of its own.
	if _, err := net.InterfaceByName(testBridge); err != nil {
		for _, args := range [][]string{
			{"link", "add", testBridge, "type", "bridge"},
			{"link", "set", testBridge, "address", testBridgeMAC},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %v: %v: %s", args, err, out)
			}
		}
	}
	dir := t.TempDir()
	m, err := New(Config{ConfDir: confDir(t, conf), CacheDir: dir + "/cache", NetNSDir: dir + "/netns"}, testLogger(t))
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	return m
}

// testPod pins a netns for id and attaches it; the test's cleanup tears
// both down again. Teardown and RemoveNetNS are idempotent, so a test may
// have done either already.
func testPod(t *testing.T, m *Manager, id string) (Attachment, []string) {
	t.Helper()
	start := time.Now()
	path, err := m.NewNetNS(id)
	if err != nil {
		t.Fatalf("NewNetNS(%q) error = %v", id, err)
	}
	pinned := time.Since(start)
	a := Attachment{PodID: id, Name: id, Namespace: "crisp-test", UID: "uid-" + id, NetNS: path}
	t.Cleanup(func() {
		if err := m.Teardown(context.Background(), a); err != nil {
			t.Errorf("cleanup Teardown(%s) error = %v", id, err)
		}
		if err := m.RemoveNetNS(path); err != nil {
			t.Errorf("cleanup RemoveNetNS(%s) error = %v", path, err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start = time.Now()
	ips, err := m.Setup(ctx, a)
	if err != nil {
		t.Fatalf("Setup(%s) error = %v", id, err)
	}
	t.Logf("pod %s: pin %v, ADD %v, ips %v", id, pinned, time.Since(start), ips)
	return a, ips
}

// testLogger sends the Manager's log to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// isMounted reports whether path is a mount point in this mount namespace.
func isMounted(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) > 4 && fields[4] == path {
			return true
		}
	}
	return false
}

// inNS runs f on a thread inside the network namespace at path.
func inNS(t *testing.T, path string, f func() error) {
	t.Helper()
	if err := ns.WithNetNSPath(path, func(ns.NetNS) error { return f() }); err != nil {
		t.Fatalf("in netns %s: %v", path, err)
	}
}

// nsLinks lists the interface names inside the namespace at path.
func nsLinks(t *testing.T, path string) []string {
	t.Helper()
	var names []string
	inNS(t, path, func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		return err
	})
	return names
}

// bridgePorts lists the interfaces enslaved to the test bridge (none when
// the bridge does not exist).
func bridgePorts(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/sys/class/net/" + testBridge + "/brif")
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// echoOnce listens on addr (host:0) inside the namespace at path, and
// returns the listening address; the listener answers one connection with
// what it reads, then closes.
func echoOnce(t *testing.T, path, addr string) string {
	t.Helper()
	var ln net.Listener
	inNS(t, path, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		_, _ = c.Write(buf[:n])
	}()
	return ln.Addr().String()
}

// dialEcho connects from inside the namespace at path to addr and checks
// that the peer echoes a message back.
func dialEcho(t *testing.T, path, addr string) {
	t.Helper()
	inNS(t, path, func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		msg := "hello from " + path
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if got := string(buf[:n]); got != msg {
			return fmt.Errorf("echo = %q, want %q", got, msg)
		}
		return nil
	})
}
