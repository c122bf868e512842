package network

import (
	"encoding/json"
	"errors"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// These tests need neither root nor plugins.

func TestBridgeConfList(t *testing.T) {
	dir := `/run/cr"isp\dir/cni/ipam` // must survive JSON quoting
	type parsed struct {
		Bridge      string `json:"bridge"`
		IsGateway   bool   `json:"isGateway"`
		IPMasq      bool   `json:"ipMasq"`
		HairpinMode bool   `json:"hairpinMode"`
		IPAM        struct {
			Ranges  [][]struct{ Subnet, Gateway string } `json:"ranges"`
			Routes  []struct{ Dst string }               `json:"routes"`
			DataDir string                               `json:"dataDir"`
		} `json:"ipam"`
	}
	tests := []struct {
		name   string
		b      Bridge
		masq   bool
		ranges []string // subnet=gateway
		routes []string
	}{
		{"default", Bridge{Name: "crisp0", Subnets: []netip.Prefix{DefaultSubnet}, Egress: EgressMasquerade, IPAMDir: dir},
			true, []string{"10.213.0.0/16=10.213.0.1"}, []string{"0.0.0.0/0"}},
		{"dual stack, routed, v6 given first", Bridge{Name: "br1", Egress: EgressRouted, IPAMDir: dir,
			Subnets: []netip.Prefix{netip.MustParsePrefix("fd00:10::/64"), netip.MustParsePrefix("10.1.2.0/24")}},
			false, []string{"10.1.2.0/24=10.1.2.1", "fd00:10::/64=fd00:10::1"}, []string{"0.0.0.0/0", "::/0"}},
		{"no egress", Bridge{Name: "br2", Egress: EgressNone, IPAMDir: dir, Subnets: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/30")}},
			false, []string{"10.9.0.0/30=10.9.0.1"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.b.check(); err != nil {
				t.Fatalf("check() = %v", err)
			}
			list, err := parseConfList(tt.b.ConfList())
			if err != nil {
				t.Fatalf("parse ConfList() error = %v", err)
			}
			if list.Name != BuiltInName || list.CNIVersion != "1.0.0" {
				t.Errorf("name, version = %q, %q; want crisp, 1.0.0", list.Name, list.CNIVersion)
			}
			if got, want := pluginTypes(list), []string{"bridge", "host-local", "portmap"}; !slices.Equal(got, want) {
				t.Errorf("pluginTypes = %v, want %v", got, want)
			}
			dirs, warnings := hostLocalDirs(list)
			if want := []string{filepath.Join(dir, "crisp")}; !slices.Equal(dirs, want) || len(warnings) != 0 {
				t.Errorf("hostLocalDirs = %v, %v; want %v, none", dirs, warnings, want)
			}
			var br parsed
			if err := json.Unmarshal(list.Plugins[0].Bytes, &br); err != nil {
				t.Fatal(err)
			}
			var ranges, routes []string
			for _, r := range br.IPAM.Ranges {
				ranges = append(ranges, r[0].Subnet+"="+r[0].Gateway)
			}
			for _, r := range br.IPAM.Routes {
				routes = append(routes, r.Dst)
			}
			if br.Bridge != tt.b.Name || !br.IsGateway || br.IPMasq != tt.masq || !br.HairpinMode || br.IPAM.DataDir != dir ||
				!slices.Equal(ranges, tt.ranges) || !slices.Equal(routes, tt.routes) {
				t.Errorf("bridge plugin = %+v; want bridge %s, gateway, masquerade %v, hairpin, ranges %v, routes %v",
					br, tt.b.Name, tt.masq, tt.ranges, tt.routes)
			}
			if !list.Plugins[1].Network.Capabilities["portMappings"] {
				t.Errorf("portmap capabilities = %v, want portMappings", list.Plugins[1].Network.Capabilities)
			}
		})
	}
}

func TestCheckSubnets(t *testing.T) {
	for _, tt := range []struct {
		cidrs []string
		want  string // "" = accepted
	}{
		{[]string{"10.0.0.0/24"}, ""},
		{[]string{"10.0.0.0/24", "fd00::/64"}, ""},
		{nil, "no subnet"},
		{[]string{"10.0.0.1/24"}, "host bits"},
		{[]string{"10.0.0.0/31"}, "no room"},
		{[]string{"fd00::/127"}, "no room"},
		{[]string{"10.0.0.0/24", "10.1.0.0/24"}, "more than one"},
	} {
		var ps []netip.Prefix
		for _, c := range tt.cidrs {
			ps = append(ps, netip.MustParsePrefix(c))
		}
		err := CheckSubnets(ps)
		if (tt.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CheckSubnets(%v) = %v, want %q", tt.cidrs, err, tt.want)
		}
	}
}

func TestNewRejects(t *testing.T) {
	dir := t.TempDir()
	bridge := Bridge{Name: "crisp0", Subnets: []netip.Prefix{DefaultSubnet}, Egress: EgressMasquerade, IPAMDir: dir}
	good := Config{ConfDir: dir + "/net.d", Fallback: &bridge, CacheDir: dir + "/c", NetNSDir: dir + "/n"}
	withBridge := func(edit func(*Bridge)) func(*Config) {
		return func(c *Config) {
			b := bridge
			edit(&b)
			c.Fallback = &b
		}
	}
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"relative cache dir", func(c *Config) { c.CacheDir = "cache" }},
		{"no netns dir", func(c *Config) { c.NetNSDir = "" }},
		{"relative plugin dir", func(c *Config) { c.PluginDirs = []string{"/usr/lib/cni", "cni"} }},
		{"relative conf dir", func(c *Config) { c.ConfDir = "net.d" }},
		{"bridge without IPAM dir", withBridge(func(b *Bridge) { b.IPAMDir = "" })},
		{"bridge name too long", withBridge(func(b *Bridge) { b.Name = "crisp0123456789ab" })},
		{"bridge name with a slash", withBridge(func(b *Bridge) { b.Name = "a/b" })},
		{"unknown egress", withBridge(func(b *Bridge) { b.Egress = "nat" })},
		{"two IPv4 subnets", withBridge(func(b *Bridge) { b.Subnets = append(b.Subnets, netip.MustParsePrefix("10.1.0.0/16")) })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.edit(&cfg)
			if _, err := New(cfg, nil); err == nil {
				t.Errorf("New() error = nil, want an error")
			}
		})
	}
	m, err := New(good, nil)
	if err != nil {
		t.Fatalf("New(good) error = %v", err)
	}
	if fi, err := os.Stat(good.ConfDir); err != nil || !fi.IsDir() {
		t.Errorf("New() did not create the config directory: %v", err)
	}
	if m.Name() != BuiltInName || m.Source() != "built-in" {
		t.Errorf("network of an empty config directory = %q from %q, want the built-in bridge", m.Name(), m.Source())
	}
}

func TestStatus(t *testing.T) {
	plugins := t.TempDir()
	for name, mode := range map[string]os.FileMode{"bridge": 0o755, "host-local": 0o755, "portmap": 0o644} {
		if err := os.WriteFile(filepath.Join(plugins, name), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	newM := func(conf []byte) *Manager {
		m, err := New(Config{ConfDir: confDir(t, conf), PluginDirs: []string{plugins}, CacheDir: dir, NetNSDir: dir}, nil)
		if err != nil {
			t.Fatalf("New() error = %v", err)
		}
		return m
	}
	if err := newM(testConfList(testIPAM(testSubnet, dir))).Status(); err != nil {
		t.Errorf("Status() with bridge and host-local = %v, want nil", err)
	}
	err := newM(testConfList(testIPAM(testSubnet, dir), `{"type": "crisp-no-such-plugin"}`, `{"type": "portmap"}`)).Status()
	if !errors.Is(err, ErrPluginNotFound) {
		t.Fatalf("Status() = %v, want ErrPluginNotFound", err)
	}
	for _, want := range []string{`"crisp-no-such-plugin"`, "portmap is not executable"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Status() = %q, want it to name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), `"bridge"`) {
		t.Errorf("Status() = %q names bridge, which is present", err)
	}
}

func TestStatusInstalled(t *testing.T) {
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		if !isFile(filepath.Join(DefaultPluginDir, p)) {
			need(t, "no "+p+" plugin")
		}
	}
	dir := t.TempDir()
	m, err := New(Config{Fallback: &Bridge{Name: "crisp0", Subnets: []netip.Prefix{DefaultSubnet}, Egress: EgressMasquerade, IPAMDir: dir},
		CacheDir: dir, NetNSDir: dir}, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	if err := m.Status(); err != nil {
		t.Errorf("Status() of the built-in bridge = %v, want nil", err)
	}
}

func TestHostLocalWithoutDataDir(t *testing.T) {
	list, err := parseConfList(testConfList(`"type": "host-local", "subnet": "10.213.250.0/24"`))
	if err != nil {
		t.Fatal(err)
	}
	dirs, warnings := hostLocalDirs(list)
	if want := []string{"/var/lib/cni/networks/" + testNet}; !slices.Equal(dirs, want) || len(warnings) != 1 {
		t.Errorf("hostLocalDirs() = %v, %v; want %v and a warning", dirs, warnings, want)
	}
}

func TestAllocationsFiles(t *testing.T) {
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, testNet)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"10.213.250.7":        "pod-x\r\neth0",
		"fd00:213::5":         "pod-y\r\neth0",
		"lock":                "",
		"last_reserved_ip.0":  "10.213.250.7",
		"10.213.250.8.tmp123": "junk",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := New(Config{ConfDir: confDir(t, testConfList(testIPAM(testSubnet, dataDir))), CacheDir: dataDir, NetNSDir: dataDir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Allocations()
	want := map[string]string{"10.213.250.7": "pod-x", "fd00:213::5": "pod-y"}
	if err != nil || !maps.Equal(got, want) {
		t.Errorf("Allocations() = %v, %v; want %v", got, err, want)
	}
}

func TestHostPorts(t *testing.T) {
	tests := []struct {
		name    string
		in      []PortMapping
		want    string // JSON of the capability value; "" = error
		wantErr bool
	}{
		{"none", nil, "null", false},
		{"container port only", []PortMapping{{ContainerPort: 80}}, "null", false},
		{"defaults and case", []PortMapping{{HostPort: 8080, ContainerPort: 80}, {HostPort: 53, ContainerPort: 53, Protocol: "UDP", HostIP: "127.0.0.1"}},
			`[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},{"hostPort":53,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"}]`, false},
		{"sctp", []PortMapping{{HostPort: 9, ContainerPort: 9, Protocol: "sctp"}}, `[{"hostPort":9,"containerPort":9,"protocol":"sctp"}]`, false},
		{"bad protocol", []PortMapping{{HostPort: 1, ContainerPort: 1, Protocol: "icmp"}}, "", true},
		{"bad port", []PortMapping{{HostPort: 70000, ContainerPort: 1}}, "", true},
		{"no container port", []PortMapping{{HostPort: 80}}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hostPorts(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("hostPorts() error = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if b, _ := json.Marshal(got); string(b) != tt.want {
				t.Errorf("hostPorts() = %s, want %s", b, tt.want)
			}
		})
	}
}
