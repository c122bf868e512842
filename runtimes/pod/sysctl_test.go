package pod

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestSysctlPath(t *testing.T) {
	tests := []struct {
		name, want string
		wantErr    bool
	}{
		{name: "net.ipv4.ip_forward", want: "net/ipv4/ip_forward"},
		{name: "net.ipv4.conf.eno2/100.rp_filter", want: "net/ipv4/conf/eno2.100/rp_filter"},
		{name: "kernel.shm_rmid_forced", want: "kernel/shm_rmid_forced"},
		{name: "net.//.kernel.core_pattern", wantErr: true}, // "//" would become ".."
		{name: "net./.kernel", wantErr: true},
		{name: "net..ipv4", wantErr: true},
		{name: ".net", wantErr: true},
		{name: "net.", wantErr: true},
		{name: "net.\x00", wantErr: true},
		{name: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := sysctlPath(tt.name)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("sysctlPath(%q) = %q, %v; want %q, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrBadSysctl) {
			t.Errorf("sysctlPath(%q) error %v does not wrap ErrBadSysctl", tt.name, err)
		}
	}
}

// TestSetSysctlsStaysBeneathProcSys writes a namespaced sysctl in a fresh
// network namespace, and checks that names which would leave /proc/sys are
// refused by the writer itself, whatever the caller validated.
func TestSetSysctlsStaysBeneathProcSys(t *testing.T) {
	requireRoot(t)
	ns := newNetNS(t)
	if err := SetSysctls(ns, "", map[string]string{"net.ipv4.ip_unprivileged_port_start": "81"}); err != nil {
		t.Fatalf("SetSysctls() = %v", err)
	}
	out, err := exec.Command("nsenter", "--net="+ns, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start").Output()
	if err != nil || strings.TrimSpace(string(out)) != "81" {
		t.Errorf("ip_unprivileged_port_start in the pod netns = %q, %v; want 81", out, err)
	}

	before, err := os.ReadFile("/proc/sys/kernel/core_pattern")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"net.//.kernel.core_pattern", "net.//.//.//.//etc/passwd", "net.ipv4.does_not_exist"} {
		if err := SetSysctls(ns, "", map[string]string{name: "|/bin/false"}); err == nil {
			t.Errorf("SetSysctls(%q) = nil, want an error", name)
		}
	}
	after, _ := os.ReadFile("/proc/sys/kernel/core_pattern")
	if string(after) != string(before) {
		t.Fatalf("kernel.core_pattern changed from %q to %q", before, after)
	}
	if _, err := os.Stat(filepath.Join("/proc/sys/net/ipv4", "does_not_exist")); err == nil {
		t.Errorf("a sysctl file was created")
	}
}

// newNetNS pins a new network namespace under a temp dir.
func newNetNS(t *testing.T) string {
	t.Helper()
	name := "crisp-sysctl-test-" + filepath.Base(t.TempDir())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	return "/run/netns/" + name
}
