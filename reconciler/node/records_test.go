package node

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/db/record"
	"github.com/crisp-cri/crisp/runtimes/layout"
	"github.com/crisp-cri/crisp/runtimes/network"
	"github.com/crisp-cri/crisp/runtimes/pod"
)

// fixturePod is a pod record crispd wrote before records had versions.
const (
	fixturePod   = "../../db/record/testdata/pod-v0-runsc.json"
	fixturePodID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// recordNode is a node with a pod root, a netns pin dir and a host-local
// allocation dir, all empty.
func recordNode(t *testing.T) (n *Node, netnsDir, ipamDir string) {
	t.Helper()
	dir := t.TempDir()
	netnsDir, data := filepath.Join(dir, "netns"), filepath.Join(dir, "ipam")
	conf := `{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"bridge","ipam":{"type":"host-local","dataDir":"` + data +
		`","ranges":[[{"subnet":"10.9.0.0/24"}]]}}]}`
	confDir := filepath.Join(dir, "net.d")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(confDir, "t.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	nm, err := network.New(network.Config{PluginDirs: []string{dir}, ConfDir: confDir,
		CacheDir: filepath.Join(dir, "cache"), NetNSDir: netnsDir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{netnsDir, filepath.Join(data, "t")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return New(Config{Files: layout.New(dir), Network: nm}), netnsDir, filepath.Join(data, "t")
}

// putRecord installs the record file b as pod id's.
func putRecord(t *testing.T, n *Node, id string, b []byte) {
	t.Helper()
	dir := pod.Dir(n.cfg.Files.Pods(), id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, record.PodFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRebuildSandboxFromVersion0: a pod recorded by a crispd before
// versions is rebuilt by this one, its netns, IPs and infra from the node.
func TestRebuildSandboxFromVersion0(t *testing.T) {
	n, netnsDir, ipamDir := recordNode(t)
	b, err := os.ReadFile(fixturePod)
	if err != nil {
		t.Fatal(err)
	}
	putRecord(t, n, fixturePodID, b)
	pin := filepath.Join(netnsDir, fixturePodID)
	for path, data := range map[string]string{pin: "", filepath.Join(ipamDir, "10.9.0.5"): fixturePodID + "\r\neth0",
		filepath.Join(ipamDir, "fd00::5"): fixturePodID + "\r\neth0", filepath.Join(ipamDir, "10.9.0.6"): "other\r\neth0"} {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := n.rebuildSandbox(fixturePodID)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := record.ReadPod(pod.Dir(n.cfg.Files.Pods(), fixturePodID))
	if err != nil {
		t.Fatal(err)
	}
	want := pr.Row()
	want.State, want.InfraID, want.NetNSPath, want.IPs = db.SandboxNotReady, fixturePodID, pin, db.StringList{"10.9.0.5", "fd00::5"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rebuildSandbox() = %+v\nwant                %+v", got, want)
	}
	if got.Name == "" || got.Handler != "gvisor" || len(got.Config) == 0 || got.ConfigHash == "" {
		t.Errorf("rebuildSandbox() = %+v, want the recorded row", got)
	}
}

func TestReadPodRefusesAnotherPodsRecord(t *testing.T) {
	n, _, _ := recordNode(t)
	b, err := os.ReadFile(fixturePod)
	if err != nil {
		t.Fatal(err)
	}
	other := strings.Repeat("ab", 32)
	putRecord(t, n, other, b)
	if _, err := n.readPod(other); err == nil || !strings.Contains(err.Error(), "describes \""+fixturePodID) {
		t.Errorf("readPod() of a record naming another pod = %v, want it refused", err)
	}
}
