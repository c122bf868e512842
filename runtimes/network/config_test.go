package network

import (
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// These tests need neither root nor plugins.

func TestDefaultConfList(t *testing.T) {
	dir := `/run/cr"isp\dir/cni/ipam` // must survive JSON quoting
	list, err := parseConfList(DefaultConfList(dir))
	if err != nil {
		t.Fatalf("parse DefaultConfList() error = %v", err)
	}
	if list.Name != "crisp" || list.CNIVersion != "1.0.0" {
		t.Errorf("DefaultConfList() name, version = %q, %q; want crisp, 1.0.0", list.Name, list.CNIVersion)
	}
	if got, want := pluginTypes(list), []string{"bridge", "host-local", "portmap"}; !slices.Equal(got, want) {
		t.Errorf("pluginTypes(default) = %v, want %v", got, want)
	}
	dirs, warnings := hostLocalDirs(list)
	if want := []string{filepath.Join(dir, "crisp")}; !slices.Equal(dirs, want) || len(warnings) != 0 {
		t.Errorf("hostLocalDirs(default) = %v, %v; want %v, none", dirs, warnings, want)
	}
	var br struct {
		Bridge      string `json:"bridge"`
		IsGateway   bool   `json:"isGateway"`
		IPMasq      bool   `json:"ipMasq"`
		HairpinMode bool   `json:"hairpinMode"`
		IPAM        struct {
			Ranges [][]struct{ Subnet, Gateway string } `json:"ranges"`
			Routes []struct{ Dst string }               `json:"routes"`
		} `json:"ipam"`
	}
	if err := json.Unmarshal(list.Plugins[0].Bytes, &br); err != nil {
		t.Fatal(err)
	}
	if br.Bridge != "crisp0" || !br.IsGateway || !br.IPMasq || !br.HairpinMode ||
		len(br.IPAM.Ranges) != 1 || br.IPAM.Ranges[0][0].Subnet != "10.213.0.0/16" ||
		br.IPAM.Ranges[0][0].Gateway != "10.213.0.1" || len(br.IPAM.Routes) != 1 || br.IPAM.Routes[0].Dst != "0.0.0.0/0" {
		t.Errorf("default bridge plugin = %+v", br)
	}
	if !list.Plugins[1].Network.Capabilities["portMappings"] {
		t.Errorf("default portmap capabilities = %v, want portMappings", list.Plugins[1].Network.Capabilities)
	}
}

func TestNewRejects(t *testing.T) {
	dir := t.TempDir()
	good := Config{ConfList: testConfList(testIPAM(testSubnet, dir)), CacheDir: dir + "/c", NetNSDir: dir + "/n"}
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"relative cache dir", func(c *Config) { c.CacheDir = "cache" }},
		{"no netns dir", func(c *Config) { c.NetNSDir = "" }},
		{"relative plugin dir", func(c *Config) { c.PluginDirs = []string{"/usr/lib/cni", "cni"} }},
		{"default conflist without IPAMDir", func(c *Config) { c.ConfList = nil }},
		{"not JSON", func(c *Config) { c.ConfList = []byte("{") }},
		{"no plugins", func(c *Config) { c.ConfList = []byte(`{"cniVersion": "1.0.0", "name": "x"}`) }},
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
	if _, err := New(good, nil); err != nil {
		t.Errorf("New(good) error = %v", err)
	}
	good.ConfList, good.IPAMDir = nil, dir+"/ipam"
	if _, err := New(good, nil); err != nil {
		t.Errorf("New(default conflist) error = %v", err)
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
		m, err := New(Config{ConfList: conf, PluginDirs: []string{plugins}, CacheDir: dir, NetNSDir: dir}, nil)
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
	m, err := New(Config{IPAMDir: dir, CacheDir: dir, NetNSDir: dir}, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	if err := m.Status(); err != nil {
		t.Errorf("Status() of the default conflist = %v, want nil", err)
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
	m, err := New(Config{ConfList: testConfList(testIPAM(testSubnet, dataDir)), CacheDir: dataDir, NetNSDir: dataDir}, nil)
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
