package pod

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root, and CI must run it")
	}
	t.Skip("SKIPPED: needs root (mounts and namespaces)")
}

const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func mounted(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

func TestCreateRemove(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	p, err := Create(root, Options{ID: id, Hostname: "web-1", DNS: &DNS{Servers: []string{"10.0.0.10"}, Searches: []string{"ns.svc.cluster.local"}, Options: []string{"ndots:5"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Remove(root, id) })
	resolv, _ := os.ReadFile(p.ResolvConf)
	if want := "search ns.svc.cluster.local\nnameserver 10.0.0.10\noptions ndots:5\n"; string(resolv) != want {
		t.Errorf("resolv.conf = %q, want %q", resolv, want)
	}
	if h, _ := os.ReadFile(p.HostnameF); string(h) != "web-1\n" {
		t.Errorf("hostname file = %q", h)
	}
	for _, m := range []string{p.Shm, p.IPCNS, p.UTSNS} {
		if !mounted(t, m) {
			t.Errorf("%s is not mounted", m)
		}
	}
	// The pinned UTS namespace carries the pod's hostname.
	out, err := exec.Command("nsenter", "--uts="+p.UTSNS, "hostname").Output()
	if err != nil || strings.TrimSpace(string(out)) != "web-1" {
		t.Errorf("hostname inside the pinned UTS namespace = %q, %v; want web-1", out, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p.Shm, &st); err != nil || st.Type != unix.TMPFS_MAGIC || st.Blocks*uint64(st.Bsize) != DefaultShmSize {
		t.Errorf("shm statfs = %+v, %v; want a 64 MiB tmpfs", st, err)
	}
	if ids, _ := List(root); len(ids) != 1 || ids[0] != id {
		t.Errorf("List() = %v, want [%s]", ids, id)
	}
	if err := Remove(root, id); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{p.Shm, p.IPCNS, p.UTSNS} {
		if mounted(t, m) {
			t.Errorf("%s still mounted after Remove", m)
		}
	}
	if _, err := os.Stat(p.Dir); !os.IsNotExist(err) {
		t.Errorf("pod dir after Remove: %v", err)
	}
	if err := Remove(root, id); err != nil {
		t.Errorf("second Remove = %v, want nil", err)
	}
}

func TestHostNamespaces(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	hostResolvConf = filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(hostResolvConf, []byte("nameserver 127.0.0.53\n"), 0o644)
	p, err := Create(root, Options{ID: id, Hostname: "node", HostIPC: true, HostUTS: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Remove(root, id) })
	if p.Shm != "" || p.IPCNS != "" || p.UTSNS != "" {
		t.Errorf("host IPC/UTS pod got %+v, want no shm and no pins", p)
	}
	if b, _ := os.ReadFile(p.ResolvConf); string(b) != "nameserver 127.0.0.53\n" {
		t.Errorf("resolv.conf without DNS config = %q, want the host's", b)
	}
}

func TestCreateRefusesBadID(t *testing.T) {
	if _, err := Create(t.TempDir(), Options{ID: "../etc"}); err == nil {
		t.Error("Create(../etc) = nil error")
	}
}
