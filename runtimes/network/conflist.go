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

// defaultConfList is crisp's shipped network. %s is the JSON-quoted
// host-local dataDir.
const defaultConfList = `{
  "cniVersion": "1.0.0",
  "name": "crisp",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "crisp0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "10.213.0.0/16", "gateway": "10.213.0.1"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %s
      }
    },
    {
      "type": "portmap",
      "capabilities": {"portMappings": true}
    }
  ]
}
`

// DefaultConfList returns crisp's shipped conflist, used when Config.ConfList
// is empty. It is CNI 1.0.0, network "crisp":
//
//   - bridge "crisp0" with isGateway (the bridge holds 10.213.0.1 and is the
//     pods' default gateway; the plugin also turns on net.ipv4.ip_forward),
//     ipMasq (traffic leaving the node is masqueraded behind the node's
//     address; needs iptables) and hairpinMode (a pod can reach itself
//     through a port mapping);
//   - host-local IPAM on 10.213.0.0/16, gateway 10.213.0.1, a default route,
//     allocations kept in ipamDataDir/crisp;
//   - portmap with the portMappings capability, fed from the pod's
//     hostPort mappings.
//
// The pod's lo is not in the list: NewNetNS brings it up when it creates the
// namespace. The MTU is left to the bridge plugin (1500); a node whose uplink
// MTU is lower should ship a conflist of its own with "mtu" set.
func DefaultConfList(ipamDataDir string) []byte {
	dir, _ := json.Marshal(ipamDataDir) // marshalling a string cannot fail
	return fmt.Appendf(nil, defaultConfList, dir)
}

// parseConfList parses a conflist and insists on an inline plugin list,
// since there is no directory to load further plugin files from.
func parseConfList(b []byte) (*libcni.NetworkConfigList, error) {
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("parse cni conflist: %w", err)
	}
	if len(list.Plugins) == 0 {
		return nil, fmt.Errorf("parse cni conflist %q: no plugins", list.Name)
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

// Allocations lists the addresses that host-local has handed out on this
// network, as IP → the container id the allocation was made for (the pod id
// given to Setup). A directory that does not exist yet holds no allocation;
// a conflist without host-local yields an empty map. Files are read without
// host-local's lock, so an allocation being written at that moment may show
// an empty id. Safe for concurrent use.
func (m *Manager) Allocations() (map[string]string, error) {
	return m.allocations()
}

// TracksIPs reports whether Allocations sees every address of the network:
// its IPAM is host-local.
func (m *Manager) TracksIPs() bool { return len(m.ipamDirs) > 0 }

func (m *Manager) allocations() (map[string]string, error) {
	out := map[string]string{}
	for _, dir := range m.ipamDirs {
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
