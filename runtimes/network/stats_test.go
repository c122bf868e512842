package network

import (
	"os"
	"testing"
)

func TestParseNetDev(t *testing.T) {
	in := `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0
  eth0:    1296      16    1    2    0     0          0         0      936      12    3    4    0     0       0          0
`
	got, err := parseNetDev([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []InterfaceStats{{Name: "eth0", RxBytes: 1296, RxPackets: 16, RxErrors: 1, RxDropped: 2,
		TxBytes: 936, TxPackets: 12, TxErrors: 3, TxDropped: 4}}
	if len(got) != 1 || got[0] != want[0] {
		t.Errorf("parseNetDev() = %+v, want %+v", got, want)
	}
	if _, err := parseNetDev([]byte("a\nb\n  eth0: 1 2 3\n")); err == nil {
		t.Error("parseNetDev(short line) succeeded")
	}
}

// InterfaceStats on this process's own namespace sees the host's
// interfaces; a missing pin is an error.
func TestInterfaceStatsHost(t *testing.T) {
	if os.Geteuid() != 0 {
		need(t, "setns needs root")
	}
	m := &Manager{}
	if _, err := m.InterfaceStats("/proc/self/ns/net"); err != nil {
		t.Errorf("InterfaceStats(own netns) = %v", err)
	}
	if _, err := m.InterfaceStats(t.TempDir() + "/gone"); err == nil {
		t.Error("InterfaceStats(missing pin) succeeded")
	}
}
