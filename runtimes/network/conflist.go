package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

// hostLocalDefaultDir is where host-local keeps allocations when a conflist
// gives no dataDir; every CNI user on the node shares it.
const hostLocalDefaultDir = "/var/lib/cni/networks"

// Egress says where pods on the built-in bridge may send packets beyond
// the node.
type Egress string

// Egress modes of the built-in bridge.
const (
	// EgressMasquerade: a default route, and traffic leaving the node is
	// masqueraded behind the node's address (needs iptables).
	EgressMasquerade Egress = "masquerade"
	// EgressRouted: a default route without masquerade, for a network
	// that routes the node's pod CIDR to the node.
	EgressRouted Egress = "routed"
	// EgressNone: no default route; pods reach the node (over the bridge's
	// address) and each other, nothing else.
	EgressNone Egress = "none"
)

// DefaultSubnet is the built-in bridge's subnet until kubelet sends the
// node's pod CIDR.
var DefaultSubnet = netip.MustParsePrefix("10.213.0.0/16")

// Bridge is crisp's built-in network, for a node without a CNI DaemonSet:
// CNI 1.0.0 network "crisp" of
//
//   - the bridge plugin on bridge Name with isGateway (the bridge holds the
//     first address of each subnet, so the host reaches its pods over it;
//     the plugin also turns on IP forwarding), hairpinMode (a pod can reach
//     itself through a port mapping), and ipMasq with EgressMasquerade;
//   - host-local IPAM on Subnets, allocations kept in IPAMDir/crisp, and a
//     default route per family unless Egress is EgressNone;
//   - portmap with the portMappings capability, fed from the pod's
//     hostPort mappings.
//
// The bridge holds one IPv4 gateway address: when the subnet changes
// (kubelet's pod CIDR replacing the configured one, which Kubernetes does
// once, before it runs pods, since a node's pod CIDR never changes once
// set), the next pod's ADD moves the bridge to the new gateway
// (forceAddress), and pods attached before lose their route through the
// node until they are recreated.
//
// The pod's lo is not in the list: NewNetNS brings it up when it creates the
// namespace. The MTU is left to the bridge plugin (1500); a node whose uplink
// MTU is lower should use a config file of its own with "mtu" set.
type Bridge struct {
	Name    string         // the Linux bridge device, e.g. crisp0
	Subnets []netip.Prefix // at most one per family, IPv4 first
	Egress  Egress
	IPAMDir string // host-local's dataDir, absolute
}

// BuiltInName is the built-in bridge's network name.
const BuiltInName = "crisp"

func (b Bridge) check() error {
	if b.Name == "" || len(b.Name) > 15 || strings.ContainsAny(b.Name, "/ \t\n:") {
		return fmt.Errorf("built-in bridge: %q is not a usable interface name (1 to 15 bytes, no /, : or spaces)", b.Name)
	}
	switch b.Egress {
	case EgressMasquerade, EgressRouted, EgressNone:
	default:
		return fmt.Errorf("built-in bridge: egress must be masquerade, routed or none, not %q", b.Egress)
	}
	if !filepath.IsAbs(b.IPAMDir) {
		return fmt.Errorf("built-in bridge: the IPAM directory %q is not an absolute path", b.IPAMDir)
	}
	return CheckSubnets(b.Subnets)
}

// ParseCIDRs parses comma-separated CIDRs, as kubelet sends the pod CIDR.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for c := range strings.SplitSeq(s, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR", c)
		}
		out = append(out, p)
	}
	return out, nil
}

// CheckSubnets checks pod CIDRs for the built-in bridge: one or two
// network addresses (no host bits set), at most one per family, each with
// room for the gateway and pods.
func CheckSubnets(subnets []netip.Prefix) error {
	if len(subnets) == 0 {
		return fmt.Errorf("built-in bridge: no subnet")
	}
	seen := map[bool]bool{}
	for _, p := range subnets {
		switch {
		case !p.IsValid():
			return fmt.Errorf("built-in bridge: invalid subnet")
		case p != p.Masked():
			return fmt.Errorf("built-in bridge: subnet %s has host bits set (the network is %s)", p, p.Masked())
		case p.Addr().Is4() && p.Bits() > 30, p.Addr().Is6() && p.Bits() > 126:
			return fmt.Errorf("built-in bridge: subnet %s leaves no room for a gateway and pods", p)
		case seen[p.Addr().Is4()]:
			return fmt.Errorf("built-in bridge: more than one subnet of the family of %s", p)
		}
		seen[p.Addr().Is4()] = true
	}
	return nil
}

// ConfList returns the bridge's conflist (see Bridge). b must have passed
// check.
func (b Bridge) ConfList() []byte {
	type rng struct {
		Subnet  string `json:"subnet"`
		Gateway string `json:"gateway"`
	}
	type route struct {
		Dst string `json:"dst"`
	}
	var ranges [][]rng
	var routes []route
	subnets := slices.Clone(b.Subnets)
	slices.SortStableFunc(subnets, func(x, y netip.Prefix) int { return cmpBool(y.Addr().Is4(), x.Addr().Is4()) })
	for _, p := range subnets {
		ranges = append(ranges, []rng{{Subnet: p.String(), Gateway: p.Addr().Next().String()}})
		if b.Egress == EgressNone {
			continue
		}
		if p.Addr().Is4() {
			routes = append(routes, route{"0.0.0.0/0"})
		} else {
			routes = append(routes, route{"::/0"})
		}
	}
	type ipam struct {
		Type    string  `json:"type"`
		Ranges  [][]rng `json:"ranges"`
		Routes  []route `json:"routes,omitempty"`
		DataDir string  `json:"dataDir"`
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       BuiltInName,
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": b.Name, "isGateway": true, "forceAddress": true, "ipMasq": b.Egress == EgressMasquerade, "hairpinMode": true,
				"ipam": ipam{Type: "host-local", Ranges: ranges, Routes: routes, DataDir: b.IPAMDir},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	out, _ := json.MarshalIndent(conf, "", "  ") // maps of strings, bools and slices always marshal
	return out
}

func cmpBool(x, y bool) int {
	switch {
	case x == y:
		return 0
	case x:
		return 1
	}
	return -1
}

// confExtensions are the file names the config directory is read for, as
// containerd and CRI-O read it.
var confExtensions = []string{".conflist", ".conf", ".json"}

// maxConfFile bounds a config file read from the directory.
const maxConfFile = 1 << 20

// skippedFile is a config file that was not used, and why.
type skippedFile struct {
	path string
	err  error
}

// firstConfig returns the first file of dir, by name, that holds a usable
// network config, with the files before it that did not.
func firstConfig(dir string) (list *libcni.NetworkConfigList, path string, skipped []skippedFile) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, "", []skippedFile{{dir, err}}
	}
	for _, e := range entries {
		if !slices.Contains(confExtensions, filepath.Ext(e.Name())) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		list, err := loadConfFile(p)
		if err != nil {
			skipped = append(skipped, skippedFile{p, err})
			continue
		}
		return list, p, skipped
	}
	return nil, "", skipped
}

// loadConfFile reads a conflist, or a single plugin's config (the older
// .conf form), which becomes a list of that one plugin. Plugins must be
// inline: libcni caches the list's bytes for DEL, and plugin files kept
// apart would be missing from them.
func loadConfFile(path string) (*libcni.NetworkConfigList, error) {
	fi, err := os.Stat(path) // follows a symlink, as DaemonSets sometimes make
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxConfFile {
		return nil, fmt.Errorf("not a regular file of at most %d bytes", maxConfFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if _, ok := top["plugins"]; !ok {
		one := map[string]json.RawMessage{"plugins": json.RawMessage("[" + string(b) + "]")}
		for _, k := range []string{"name", "cniVersion"} {
			if v, ok := top[k]; ok {
				one[k] = v
			}
		}
		if b, err = json.Marshal(one); err != nil {
			return nil, err
		}
	}
	return parseConfList(b)
}

// parseConfList parses a conflist and insists on a named network with an
// inline plugin list whose plugins each have a type.
func parseConfList(b []byte) (*libcni.NetworkConfigList, error) {
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("parse cni conflist: %w", err)
	}
	if list.Name == "" {
		return nil, fmt.Errorf("parse cni conflist: the network has no name")
	}
	if len(list.Plugins) == 0 {
		return nil, fmt.Errorf("parse cni conflist %q: no plugins", list.Name)
	}
	for i, p := range list.Plugins {
		if p.Network.Type == "" {
			return nil, fmt.Errorf("parse cni conflist %q: plugin %d has no type", list.Name, i)
		}
	}
	return list, nil
}

// pluginTypes returns the plugin types that the list runs, directly or as
// a plugin's IPAM, each once, in order.
func pluginTypes(list *libcni.NetworkConfigList) []string {
	var out []string
	for _, p := range list.Plugins {
		var conf struct {
			IPAM struct {
				Type string `json:"type"`
			} `json:"ipam"`
		}
		_ = json.Unmarshal(p.Bytes, &conf) // it parsed once already
		for _, t := range []string{p.Network.Type, conf.IPAM.Type} {
			if t != "" && !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// hostLocalDirs returns the directories in which host-local keeps the
// allocations of the list's network, with a warning for each plugin that
// falls back to the node-wide default directory.
func hostLocalDirs(list *libcni.NetworkConfigList) (dirs, warnings []string) {
	seen := map[string]bool{}
	for _, p := range list.Plugins {
		var conf struct {
			IPAM struct {
				Type    string `json:"type"`
				DataDir string `json:"dataDir"`
			} `json:"ipam"`
		}
		if json.Unmarshal(p.Bytes, &conf) != nil || conf.IPAM.Type != "host-local" {
			continue
		}
		dataDir := conf.IPAM.DataDir
		if dataDir == "" {
			dataDir = hostLocalDefaultDir
			warnings = append(warnings, fmt.Sprintf("plugin %q: host-local has no dataDir, so it shares %s with every other CNI user", p.Network.Type, dataDir))
		}
		d := filepath.Join(dataDir, list.Name)
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return dirs, warnings
}

// Allocations lists the addresses that host-local has handed out on the
// node's networks, as IP → the container id the allocation was made for (the pod id
// given to Setup). A directory that does not exist yet holds no allocation;
// a conflist without host-local yields an empty map. Files are read without
// host-local's lock, so an allocation being written at that moment may show
// an empty id. Safe for concurrent use.
//
// It reads the current network's directories and the built-in bridge's,
// whose pods may outlive its use; those of a config file no longer in use
// are not read.
func (m *Manager) Allocations() (map[string]string, error) {
	var dirs []string
	if n := m.cur.Load(); n != nil {
		dirs = n.ipamDirs
	}
	m.mu.Lock()
	if m.fallback != nil {
		dirs = append(slices.Clip(dirs), filepath.Join(m.fallback.IPAMDir, BuiltInName))
	}
	m.mu.Unlock()
	out := map[string]string{}
	for _, dir := range slices.Compact(slices.Sorted(slices.Values(dirs))) {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list ip allocations: %w", err)
		}
		for _, e := range entries {
			// Only files named after an address are allocations; the rest
			// are host-local's lock and last_reserved_ip.* files.
			addr, err := netip.ParseAddr(e.Name())
			if err != nil || !e.Type().IsRegular() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if errors.Is(err, fs.ErrNotExist) {
				continue // released while we listed
			}
			if err != nil {
				return nil, fmt.Errorf("list ip allocations: %w", err)
			}
			id, _, _ := strings.Cut(string(b), "\r\n")
			out[addr.String()] = strings.TrimSpace(id)
		}
	}
	return out, nil
}

// TracksIPs reports whether Allocations sees every address of the current
// network: its IPAM is host-local.
func (m *Manager) TracksIPs() bool {
	n := m.cur.Load()
	return n != nil && len(n.ipamDirs) > 0
}
