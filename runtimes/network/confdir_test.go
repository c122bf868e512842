package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// These tests need neither root nor real plugins.

// fakeConf is a conflist of the fake plugin alone, as network name,
// recording into captureDir.
func fakeConf(name, captureDir string) []byte {
	return fmt.Appendf(nil, `{"cniVersion": "1.0.0", "name": %q, "plugins": [{"type": %q,
	  "captureDir": %q, "capabilities": {"portMappings": true}}]}`, name, fakePlugin, captureDir)
}

// fakePluginDir is a plugin directory holding the fake plugin.
func fakePluginDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(dir, fakePlugin)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestConfDirPicksFirstUsableByName(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"00-notes.txt":        `{"cniVersion": "1.0.0", "name": "txt", "plugins": [{"type": "bridge"}]}`,
		"05-broken.conflist":  `{"cniVersion": "1.0.0", "name": "broken", "plugins": [`,
		"06-empty.conflist":   `{"cniVersion": "1.0.0", "name": "empty", "plugins": []}`,
		"07-untyped.conflist": `{"cniVersion": "1.0.0", "name": "untyped", "plugins": [{"bridge": "x"}]}`,
		"08-unnamed.conf":     `{"cniVersion": "1.0.0", "type": "bridge"}`,
		"10-single.conf":      `{"cniVersion": "0.4.0", "name": "single", "type": "bridge", "bridge": "cni0"}`,
		"20-list.conflist":    `{"cniVersion": "1.0.0", "name": "list", "plugins": [{"type": "bridge"}]}`,
	}
	for name, body := range files {
		writeFile(t, filepath.Join(dir, name), []byte(body))
	}
	if err := os.Mkdir(filepath.Join(dir, "01-dir.conflist"), 0o755); err != nil {
		t.Fatal(err)
	}
	list, path, skipped := firstConfig(dir)
	if list == nil || list.Name != "single" || path != filepath.Join(dir, "10-single.conf") {
		t.Fatalf("firstConfig() = %v from %q, want network single from 10-single.conf", list, path)
	}
	if list.CNIVersion != "0.4.0" || len(list.Plugins) != 1 || list.Plugins[0].Network.Type != "bridge" {
		t.Errorf("single plugin file as a list = version %q, %d plugins", list.CNIVersion, len(list.Plugins))
	}
	var names []string
	for _, s := range skipped {
		names = append(names, filepath.Base(s.path))
		if s.err == nil {
			t.Errorf("skipped %s without a reason", s.path)
		}
	}
	want := []string{"01-dir.conflist", "05-broken.conflist", "06-empty.conflist", "07-untyped.conflist", "08-unnamed.conf"}
	if !slices.Equal(names, want) {
		t.Errorf("skipped = %v, want %v", names, want)
	}
	// A symlinked file counts, as some DaemonSets install one.
	if err := os.Symlink(filepath.Join(dir, "20-list.conflist"), filepath.Join(dir, "09-link.conflist")); err != nil {
		t.Fatal(err)
	}
	if list, _, _ := firstConfig(dir); list == nil || list.Name != "list" {
		t.Errorf("firstConfig() with a symlink first = %v, want network list", list)
	}
}

func TestNoNetworkUntilConfigAppears(t *testing.T) {
	dir, capture := t.TempDir(), t.TempDir()
	confDir := filepath.Join(dir, "net.d")
	m, err := New(Config{ConfDir: confDir, PluginDirs: []string{fakePluginDir(t)}, CacheDir: dir + "/cache", NetNSDir: dir + "/netns"}, testLogger(t))
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	err = m.Status()
	if !errors.Is(err, ErrNoNetwork) || !strings.Contains(err.Error(), confDir) {
		t.Errorf("Status() of an empty directory = %v, want ErrNoNetwork naming %s", err, confDir)
	}
	if _, err := m.Setup(context.Background(), fakePod()); !errors.Is(err, ErrNoNetwork) {
		t.Errorf("Setup() without a network = %v, want ErrNoNetwork", err)
	}
	if err := m.Teardown(context.Background(), fakePod()); err != nil {
		t.Errorf("Teardown() without a network or an ADD = %v, want nil", err)
	}
	if got := fakeCalls(t, capture); len(got) != 0 {
		t.Errorf("plugin calls without a network = %v, want none", commands(got))
	}

	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan error, 1)
	go func() { watched <- m.Watch(ctx) }()
	defer func() {
		cancel()
		if err := <-watched; err != nil {
			t.Errorf("Watch() = %v", err)
		}
	}()
	// Written in two steps, as a DaemonSet might: Watch settles first.
	conf := fakeConf("late", capture)
	f, err := os.Create(filepath.Join(confDir, "10-late.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write(conf[:10])
	time.Sleep(20 * time.Millisecond)
	f.Write(conf[10:])
	f.Close()
	waitFor(t, func() bool { return m.Name() == "late" }, "network late loaded")
	if err := m.Status(); err != nil {
		t.Errorf("Status() with the config in place = %v", err)
	}
	if _, err := m.Setup(context.Background(), fakePod()); err != nil {
		t.Fatalf("Setup() = %v", err)
	}
	if got := commands(fakeCalls(t, capture)); !slices.Equal(got, []string{"ADD"}) {
		t.Errorf("plugin calls = %v, want [ADD]", got)
	}
	if err := os.Remove(filepath.Join(confDir, "10-late.conflist")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return errors.Is(m.Status(), ErrNoNetwork) }, "network gone with its file")
	// The pod's DEL still runs the conflist it was attached with.
	if err := m.Teardown(context.Background(), fakePod()); err != nil {
		t.Fatalf("Teardown() after the config went = %v", err)
	}
	if got := commands(fakeCalls(t, capture)); !slices.Equal(got, []string{"ADD", "DEL"}) {
		t.Errorf("plugin calls = %v, want [ADD DEL]", got)
	}
}

func TestPodsStayOnTheirNetwork(t *testing.T) {
	dir, capA, capB := t.TempDir(), t.TempDir(), t.TempDir()
	confDir := filepath.Join(dir, "net.d")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(confDir, "20-a.conflist"), fakeConf("a", capA))
	m, err := New(Config{ConfDir: confDir, PluginDirs: []string{fakePluginDir(t)}, CacheDir: dir + "/cache", NetNSDir: dir + "/netns"}, testLogger(t))
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	ctx := context.Background()
	podA := fakePod()
	if _, err := m.Setup(ctx, podA); err != nil {
		t.Fatalf("Setup(A) = %v", err)
	}
	writeFile(t, filepath.Join(confDir, "10-b.conflist"), fakeConf("b", capB))
	m.Reload()
	if m.Name() != "b" {
		t.Fatalf("after 10-b appeared, network = %q, want b (earlier by name)", m.Name())
	}
	if _, err := m.Setup(ctx, podA); !errors.Is(err, ErrAlreadyAttached) {
		t.Errorf("Setup(A) again on network b = %v, want ErrAlreadyAttached", err)
	}
	podB := fakePod()
	podB.PodID = "pod-d"
	if _, err := m.Setup(ctx, podB); err != nil {
		t.Fatalf("Setup(B) = %v", err)
	}
	if err := m.Check(ctx, podA); err != nil {
		t.Errorf("Check(A) = %v", err)
	}
	// Without mappings from the caller, A's come from its ADD.
	podA.PortMappings = nil
	if err := m.Teardown(ctx, podA); err != nil {
		t.Fatalf("Teardown(A) = %v", err)
	}
	callsA, callsB := fakeCalls(t, capA), fakeCalls(t, capB)
	if got := commands(callsA); !slices.Equal(got, []string{"ADD", "CHECK", "DEL"}) {
		t.Errorf("network a calls = %v, want [ADD CHECK DEL]", got)
	}
	if got := callsA[len(callsA)-1].Conf.RuntimeConfig.PortMappings; !slices.Equal(got, wantMappings) {
		t.Errorf("DEL of A port mappings = %v, want %v", got, wantMappings)
	}
	for _, c := range callsB {
		if c.ContainerID != "pod-d" {
			t.Errorf("network b ran %s for %s, want only pod-d", c.Command, c.ContainerID)
		}
	}
	if err := m.Teardown(ctx, podB); err != nil {
		t.Fatalf("Teardown(B) = %v", err)
	}
	if got := commands(fakeCalls(t, capB)); !slices.Equal(got, []string{"ADD", "DEL"}) {
		t.Errorf("network b calls = %v, want [ADD DEL]", got)
	}
}

func TestSetPodCIDRs(t *testing.T) {
	dir := t.TempDir()
	bridge := &Bridge{Name: "crisp0", Subnets: []netip.Prefix{DefaultSubnet}, Egress: EgressMasquerade, IPAMDir: dir}
	m, err := New(Config{ConfDir: dir + "/net.d", Fallback: bridge, CacheDir: dir, NetNSDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cidrs := []netip.Prefix{netip.MustParsePrefix("10.244.3.0/24"), netip.MustParsePrefix("fd00:3::/64")}
	if err := m.SetPodCIDRs(cidrs); err != nil {
		t.Fatalf("SetPodCIDRs() = %v", err)
	}
	n := m.cur.Load()
	if conf := string(n.list.Bytes); !strings.Contains(conf, `"10.244.3.0/24"`) || !strings.Contains(conf, `"fd00:3::/64"`) ||
		strings.Contains(conf, "10.213.0.0/16") {
		t.Errorf("built-in conflist after SetPodCIDRs = %s", conf)
	}
	if err := m.SetPodCIDRs([]netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.2.0.0/16")}); err == nil {
		t.Errorf("SetPodCIDRs(two IPv4) = nil, want an error")
	}
	if m.cur.Load() != n {
		t.Errorf("a refused SetPodCIDRs changed the network")
	}
	// A config file takes over; the CIDRs wait for the built-in bridge.
	writeFile(t, filepath.Join(dir, "net.d", "10-x.conflist"), fakeConf("x", dir))
	m.Reload()
	if m.Name() != "x" {
		t.Fatalf("network = %q, want x", m.Name())
	}
	if err := m.SetPodCIDRs([]netip.Prefix{netip.MustParsePrefix("10.5.0.0/24")}); err != nil || m.Name() != "x" {
		t.Errorf("SetPodCIDRs under a config file = %v, network %q; want nil, x", err, m.Name())
	}
	os.Remove(filepath.Join(dir, "net.d", "10-x.conflist"))
	m.Reload()
	if conf := string(m.cur.Load().list.Bytes); !strings.Contains(conf, `"10.5.0.0/24"`) {
		t.Errorf("built-in conflist back in use = %s, want subnet 10.5.0.0/24", conf)
	}
	// Without a built-in bridge there is nothing to change.
	none, err := New(Config{ConfDir: dir + "/empty", CacheDir: dir, NetNSDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := none.SetPodCIDRs(cidrs); err != nil || none.Name() != "" {
		t.Errorf("SetPodCIDRs without a bridge = %v, network %q; want nil, none", err, none.Name())
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
