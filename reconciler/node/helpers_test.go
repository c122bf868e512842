package node

import (
	"reflect"
	"strings"
	"testing"
)

func TestOverlayLayer(t *testing.T) {
	n := New(Config{GraphRoot: "/var/lib/crisp/storage"})
	for path, want := range map[string]string{
		"/var/lib/crisp/storage/overlay/abc/merged":      "abc",
		"/var/lib/crisp/storage/overlay/abc/diff":        "",
		"/var/lib/crisp/storage/overlay/merged":          "",
		"/var/lib/crisp/storage/overlay/a/b/merged":      "",
		"/var/lib/other/storage/overlay/abc/merged":      "",
		"/var/lib/crisp/storage/overlay/../x/y/merged":   "",
		"/var/lib/crisp/storage/overlay-layers/x/merged": "",
	} {
		got, ok := n.overlayLayer(path)
		if got != want || ok != (want != "") {
			t.Errorf("overlayLayer(%s) = %q, %v; want %q", path, got, ok, want)
		}
	}
}

func TestCgroupName(t *testing.T) {
	id := strings.Repeat("ab", 32)
	for path, want := range map[string]bool{
		"/crisp/" + id:                        true,
		"/kubepods/pod1/crisp-" + id:          true,
		"/kubepods/pod1/crisp-monitor-" + id:  true,
		"/kubepods/pod1/crisp-monitors":       false,
		"/kubepods/crisp-monitor-" + id + "x": false,
		"/crisp/" + id + "/x":                 false,
		"/other-" + id:                        false,
		"/crisp/" + id[:10]:                   false,
		"/kubepods/crisp-" + id + "x":         false,
		"/crisp/" + strings.ToUpper(id):       false,
	} {
		if got := cgroupName.MatchString(path); got != want {
			t.Errorf("cgroupName.MatchString(%s) = %v, want %v", path, got, want)
		}
	}
}

func TestSortIPs(t *testing.T) {
	ips := []string{"fd00::2", "10.0.0.9", "10.0.0.10"}
	sortIPs(ips)
	if want := []string{"10.0.0.9", "10.0.0.10", "fd00::2"}; !reflect.DeepEqual(ips, want) {
		t.Errorf("sortIPs() = %v, want %v", ips, want)
	}
}
