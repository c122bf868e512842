package network

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
)

// InterfaceStats are one network interface's cumulative counters.
type InterfaceStats struct {
	Name                string
	RxBytes, RxPackets  uint64
	RxErrors, RxDropped uint64
	TxBytes, TxPackets  uint64
	TxErrors, TxDropped uint64
}

// InterfaceStats reads the counters of every interface but loopback in
// the network namespace pinned at netnsPath, sorted as the kernel lists
// them. It enters the namespace on a locked OS thread for one read of
// /proc/thread-self/net/dev (which follows the reading thread's
// namespace, where /sys/class/net follows sysfs's mounter), so the cost
// is two setns calls, whatever the number of interfaces. A pin that is
// gone is an error wrapping fs.ErrNotExist. Safe for concurrent use.
func (m *Manager) InterfaceStats(netnsPath string) ([]InterfaceStats, error) {
	var b []byte
	err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		var err error
		b, err = os.ReadFile("/proc/thread-self/net/dev")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("interface counters of netns %s: %w", netnsPath, err)
	}
	stats, err := parseNetDev(b)
	if err != nil {
		return nil, fmt.Errorf("interface counters of netns %s: %w", netnsPath, err)
	}
	return stats, nil
}

// parseNetDev parses /proc/net/dev: two header lines, then
//
//	eth0: rxbytes rxpackets rxerrs rxdrop fifo frame compressed multicast txbytes txpackets txerrs txdrop ...
func parseNetDev(b []byte) ([]InterfaceStats, error) {
	var out []InterfaceStats
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 0; sc.Scan(); line++ {
		if line < 2 {
			continue
		}
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			return nil, fmt.Errorf("parse net/dev line %q", sc.Text())
		}
		name = strings.TrimSpace(name)
		if name == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 12 {
			return nil, fmt.Errorf("parse net/dev line %q: %d fields", sc.Text(), len(f))
		}
		var v [12]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("parse net/dev line %q: %w", sc.Text(), err)
			}
			v[i] = n
		}
		out = append(out, InterfaceStats{Name: name,
			RxBytes: v[0], RxPackets: v[1], RxErrors: v[2], RxDropped: v[3],
			TxBytes: v[8], TxPackets: v[9], TxErrors: v[10], TxDropped: v[11]})
	}
	return out, sc.Err()
}
