package record

import (
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
)

const (
	podID     = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	hostNet   = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	podUID    = "8f5c1a52-6d0e-4f7e-9a43-0f0c3c2f4b11"
	podName   = "k8s_POD_web_shop_" + podUID + "_2"
	podLogDir = "/var/log/pods/shop_web_" + podUID
)

// fixtureDir returns a pod dir holding testdata's file as its record.
func fixtureDir(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, PodFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestReadPodVersion0 reads the records crispd wrote before versions: an
// upgraded crispd must rebuild those pods.
func TestReadPodVersion0(t *testing.T) {
	for _, tc := range []struct {
		file         string
		want         db.Sandbox
		infra, netns bool
		hostNetwork  bool
	}{
		{file: "pod-v0-runsc.json", infra: true, netns: true, want: db.Sandbox{
			ID: podID, Handler: "gvisor", CreatedAt: 1796483144260964645,
			ConfigHash: "b6f48fe2e7dc09e1806faea61dd544cffadb6e27450bd040570ade63ece2c52b",
		}},
		{file: "pod-v0-hostnet.json", hostNetwork: true, want: db.Sandbox{
			ID: hostNet, Handler: "runc", Privileged: true, CreatedAt: 1796483144261832708,
			ConfigHash: "766cd5c4c887c25182d561d82f98927305c07045721e3934a3099906929c4e38",
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			dir := fixtureDir(t, tc.file)
			if !HasPod(dir) {
				t.Fatal("HasPod() = false")
			}
			p, err := ReadPod(dir)
			if err != nil {
				t.Fatal(err)
			}
			if p.Version != 0 || p.Infra != tc.infra || p.NetNS != tc.netns {
				t.Errorf("ReadPod() = version %d, infra %v, netns %v; want 0, %v, %v", p.Version, p.Infra, p.NetNS, tc.infra, tc.netns)
			}
			got := p.Row()
			cfg := &runtimeapi.PodSandboxConfig{}
			if err := proto.Unmarshal(got.Config, cfg); err != nil {
				t.Fatalf("Row().Config: %v", err)
			}
			m := cfg.GetMetadata()
			if m.GetName() != "web" || m.GetNamespace() != "shop" || m.GetUid() != podUID || m.GetAttempt() != 2 ||
				cfg.GetHostname() != "web-0" || cfg.GetLogDirectory() != podLogDir ||
				(cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE) != tc.hostNetwork {
				t.Errorf("Row().Config = %v, want the pod's config", cfg)
			}
			if h := db.ConfigHash(got.Config, got.Handler); h != got.ConfigHash {
				t.Errorf("Row().ConfigHash = %s, but its config and handler hash to %s", got.ConfigHash, h)
			}
			got.Config = nil
			want := tc.want
			want.Name, want.KubeName, want.KubeNamespace, want.KubeUID, want.Attempt = podName, "web", "shop", podUID, 2
			want.Trust, want.TrustReason, want.LogDir = "trusted", "handler-default", podLogDir
			want.Labels = db.StringMap{"app": "web", "io.kubernetes.pod.namespace": "shop"}
			want.Annotations = db.StringMap{"kubernetes.io/config.source": "api", "note": `a "quoted" value`}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Row() = %+v\nwant    %+v", got, want)
			}
		})
	}
}

// testPod is a row with every field a record keeps set, and the ones it
// leaves out set too.
func testPod(t *testing.T) db.Sandbox {
	t.Helper()
	blob, err := proto.MarshalOptions{Deterministic: true}.Marshal(&runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "shop", Uid: podUID, Attempt: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	return db.Sandbox{
		ID: podID, Name: podName, KubeName: "web", KubeNamespace: "shop", KubeUID: podUID, Attempt: 2,
		State: db.SandboxReady, Handler: "gvisor", Trust: "untrusted", TrustReason: "annotation", Privileged: true,
		NetNSPath: "/run/netns/x", IPs: db.StringList{"10.0.0.2"}, InfraID: podID, LogDir: podLogDir,
		CreatedAt: 1700000000000000001, UpdatedAt: 1700000000000000002,
		Labels: db.StringMap{"app": "web"}, Annotations: db.StringMap{"note": "x"},
		Config: blob, ConfigHash: db.ConfigHash(blob, "gvisor"),
	}
}

func TestPodRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if HasPod(dir) {
		t.Fatal("HasPod() = true before any write")
	}
	if _, err := ReadPod(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadPod() of nothing = %v, want fs.ErrNotExist", err)
	}
	row := testPod(t)
	rec := NewPod(row, true, false)
	rec.Version = 0 // WritePod writes the current version whatever it is given
	if err := WritePod(dir, rec); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPod(dir)
	if err != nil || !HasPod(dir) {
		t.Fatalf("ReadPod() = %+v, %v", got, err)
	}
	if got.Version != Version || !got.Infra || got.NetNS {
		t.Errorf("ReadPod() = version %d, infra %v, netns %v; want %d, true, false", got.Version, got.Infra, got.NetNS, Version)
	}
	want := row
	want.State, want.NetNSPath, want.IPs, want.InfraID, want.UpdatedAt = "", "", nil, "", 0
	if r := got.Row(); !reflect.DeepEqual(r, want) {
		t.Errorf("Row() = %+v\nwant    %+v", r, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != PodFile {
		t.Errorf("pod dir holds %v, want only %s", entries, PodFile)
	}
	if fi, err := os.Stat(filepath.Join(dir, PodFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("record mode = %v, %v; want 0600", fi.Mode(), err)
	}
	if err := WritePod(filepath.Join(dir, "missing"), rec); err == nil || !strings.Contains(err.Error(), podID) {
		t.Errorf("WritePod(no dir) = %v, want an error naming the pod", err)
	}
}

// TestPodFormat pins the stored names: a Go field renamed must not change
// a file that outlives crispd.
func TestPodFormat(t *testing.T) {
	dir := t.TempDir()
	if err := WritePod(dir, NewPod(testPod(t), true, true)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, PodFile))
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]json.RawMessage
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var sb map[string]json.RawMessage
	if err := json.Unmarshal(f["sandbox"], &sb); err != nil {
		t.Fatal(err)
	}
	if keys := slices.Sorted(maps.Keys(f)); !slices.Equal(keys, []string{"infra", "netns", "sandbox", "version"}) {
		t.Errorf("record keys = %v", keys)
	}
	want := []string{"annotations", "attempt", "config", "config_hash", "created_at", "handler", "id", "kube_name",
		"kube_namespace", "kube_uid", "labels", "log_dir", "name", "privileged", "trust", "trust_reason"}
	if keys := slices.Sorted(maps.Keys(sb)); !slices.Equal(keys, want) {
		t.Errorf("sandbox keys = %v\nwant             %v", keys, want)
	}
	if string(f["version"]) != "1" {
		t.Errorf("version = %s, want 1", f["version"])
	}
}

func TestReadPodRefusesMalformed(t *testing.T) {
	good := func(t *testing.T) map[string]any {
		dir := t.TempDir()
		if err := WritePod(dir, NewPod(testPod(t), true, true)); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, PodFile))
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	v0, err := os.ReadFile(filepath.Join("testdata", "pod-v0-runsc.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		edit       func(m map[string]any)
		raw        string // instead of edit
	}{
		{name: "not json", raw: `{"version":`, want: "unexpected end"},
		{name: "no version", edit: func(m map[string]any) { delete(m, "version") }, want: "version is missing"},
		{name: "version not a number", edit: func(m map[string]any) { m["version"] = "1" }, want: "version"},
		{name: "negative version", edit: func(m map[string]any) { m["version"] = -1 }, want: "version -1 is invalid"},
		{name: "no sandbox", edit: func(m map[string]any) { delete(m, "sandbox") }, want: "sandbox is missing"},
		{name: "no infra", edit: func(m map[string]any) { delete(m, "infra") }, want: "infra is missing"},
		{name: "no netns", edit: func(m map[string]any) { delete(m, "netns") }, want: "netns is missing"},
		{name: "no id", edit: func(m map[string]any) { delete(m["sandbox"].(map[string]any), "id") }, want: "sandbox.id is missing"},
		{name: "no name", edit: func(m map[string]any) { delete(m["sandbox"].(map[string]any), "name") }, want: "sandbox.name is missing"},
		{name: "no config", edit: func(m map[string]any) { delete(m["sandbox"].(map[string]any), "config") }, want: "sandbox.config is missing"},
		{name: "config not base64", edit: func(m map[string]any) { m["sandbox"].(map[string]any)["config"] = "%%" }, want: "sandbox.config"},
		{name: "config not protobuf", edit: func(m map[string]any) { m["sandbox"].(map[string]any)["config"] = "/////w==" }, want: "sandbox.config: proto"},
		{name: "attempt not a number", edit: func(m map[string]any) { m["sandbox"].(map[string]any)["attempt"] = "2" }, want: "attempt"},
		{name: "v0 no row", raw: `{"infra":true,"netns":true}`, want: "row is missing"},
		{name: "v0 no id", raw: strings.Replace(string(v0), `"ID":"`+podID+`",`, "", 1), want: "row.ID is missing"},
		{name: "v0 no config", raw: strings.Replace(string(v0), `"Config":"`, `"Config0":"`, 1), want: "row.Config is missing"},
		{name: "v0 no netns", raw: strings.Replace(string(v0), `,"netns":true`, "", 1), want: "netns is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.raw)
			if tc.edit != nil {
				m := good(t)
				tc.edit(m)
				b, _ = json.Marshal(m)
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, PodFile), b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := ReadPod(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), filepath.Join(dir, PodFile)) {
				t.Errorf("ReadPod() = %v, want an error naming the file and containing %q", err, tc.want)
			}
		})
	}
}

// TestReadPodRefusesNewerVersion: a later crispd's record is refused by
// its version, not guessed at, whether its fields look familiar or not.
func TestReadPodRefusesNewerVersion(t *testing.T) {
	dir := t.TempDir()
	if err := WritePod(dir, NewPod(testPod(t), false, true)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, PodFile)
	b, _ := os.ReadFile(path)
	familiar := strings.Replace(string(b), `"version":1`, `"version":2`, 1)
	for _, body := range []string{familiar, `{"version":2,"sandbox":"elsewhere","infra":"maybe"}`} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := ReadPod(dir)
		if err == nil || !strings.Contains(err.Error(), "version 2 is newer than this crispd reads (up to 1)") {
			t.Errorf("ReadPod(%s) = %v, want it refused by version", body, err)
		}
	}
}

func TestWritePodRefusesWhatReadRefuses(t *testing.T) {
	for name, edit := range map[string]func(*db.Sandbox){
		"sandbox.id":     func(s *db.Sandbox) { s.ID = "" },
		"sandbox.name":   func(s *db.Sandbox) { s.Name = "" },
		"sandbox.config": func(s *db.Sandbox) { s.Config = []byte{0xff} },
	} {
		row := testPod(t)
		edit(&row)
		dir := t.TempDir()
		if err := WritePod(dir, NewPod(row, false, false)); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("WritePod() without a good %s = %v, want an error naming it", name, err)
		}
		if HasPod(dir) {
			t.Errorf("WritePod() without a good %s left a record", name)
		}
	}
}
