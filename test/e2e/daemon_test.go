// Package e2e drives the real crispd binary over its sockets, as kubelet,
// crictl and operators do.
package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
)

func TestDaemonServesCRIAndAdmin(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	v, err := d.Runtime().Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatalf("Version() = %v", err)
	}
	if v.RuntimeName != "crisp" || v.RuntimeApiVersion != "v1" {
		t.Errorf("Version() = %+v, want crisp, API v1", v)
	}

	st, err := d.Runtime().Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatalf("Status() = %v", err)
	}
	conds := map[string]*runtimeapi.RuntimeCondition{}
	for _, c := range st.Status.Conditions {
		conds[c.Type] = c
	}
	// runc (the default handler) is installed.
	if c := conds[runtimeapi.RuntimeReady]; c == nil || !c.Status {
		t.Errorf("RuntimeReady = %v, want true", c)
	}
	// The CNI plugins of the test network are installed.
	if c := conds[runtimeapi.NetworkReady]; c == nil || !c.Status {
		t.Errorf("NetworkReady = %v, want true", c)
	}
	var handlers []string
	for _, h := range st.RuntimeHandlers {
		handlers = append(handlers, h.Name)
	}
	if strings.Join(handlers, ",") != ",runc,runsc" {
		t.Errorf("Status() handlers = %q, want \"\" (the default), runc, runsc", handlers)
	}

	rc, err := d.Runtime().RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
	if err != nil || rc.Linux.CgroupDriver != runtimeapi.CgroupDriver_CGROUPFS {
		t.Errorf("RuntimeConfig() = %v, %v; want cgroupfs", rc, err)
	}

	// What is not built yet says so rather than pretending.
	_, err = d.Runtime().CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: "0123456789ab"})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("CheckpointContainer() = %v, want Unimplemented", err)
	}

	// Socket permissions: CRI 0660, admin 0600.
	for path, want := range map[string]os.FileMode{d.Socket(): 0o660, d.AdminSocket(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != want {
			t.Errorf("%s mode = %v, want socket %v", path, fi.Mode(), want)
		}
	}

	// crispctl over the admin socket.
	out, errOut, err := d.Crispctl("reconcile", "--dry-run")
	if err != nil || !strings.Contains(out, "0 actions would repair (dry run)") {
		t.Errorf("crispctl reconcile --dry-run = %q, %q, %v", out, errOut, err)
	}
	out, errOut, err = d.Crispctl("reconcile", "--json")
	var rep struct {
		DryRun  bool   `json:"dryRun"`
		Actions []any  `json:"actions"`
		Started string `json:"startedUnixNano"`
	}
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || rep.DryRun || rep.Started == "" {
		t.Errorf("crispctl reconcile --json = %q, %q, %v", out, errOut, err)
	}
	out, _, err = d.Crispctl("info", "--json")
	var info struct {
		Paths         map[string]string `json:"paths"`
		SchemaVersion int               `json:"schemaVersion"`
		CleanStart    bool              `json:"cleanStart"`
	}
	if err != nil || json.Unmarshal([]byte(out), &info) != nil || info.Paths["database"] != d.Database() || info.SchemaVersion < 1 || !info.CleanStart {
		t.Errorf("crispctl info --json = %q, %v", out, err)
	}

	// Every pass is in reconcile_runs: startup, the dry run and the real one.
	out, errOut, err = d.Crispctl("sql", "--csv", "SELECT trigger, dry_run FROM reconcile_history ORDER BY id")
	if err != nil || out != "trigger,dry_run\nstartup,0\nadmin,1\nadmin,0\n" {
		t.Errorf("crispctl sql reconcile_history = %q, %q, %v", out, errOut, err)
	}
}

// crispctl sql refuses every write, and the database file stays
// byte-identical.
func TestCrispctlSQLIsReadOnly(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	// Stopped cleanly, the WAL is checkpointed into the main file: any
	// write would have to change it.
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	before := fileHash(t, d.Database())
	for _, q := range []string{
		"DELETE FROM sandboxes",
		"UPDATE names SET owner_id = 'x'",
		"INSERT INTO events (at, kind, object_id, type) VALUES (1, 'node', 'n', 't')",
		"ATTACH DATABASE '" + d.Dir + "/other.db' AS o",
		"PRAGMA writable_schema=1",
		"DROP VIEW pods",
	} {
		out, errOut, err := d.Crispctl("sql", q)
		if err == nil || !strings.Contains(errOut, "read-only") {
			t.Errorf("crispctl sql %q = %q, %q, %v; want a read-only refusal", q, out, errOut, err)
		}
	}
	if _, err := os.Stat(d.Dir + "/other.db"); err == nil {
		t.Errorf("ATTACH created %s/other.db", d.Dir)
	}
	if after := fileHash(t, d.Database()); after != before {
		t.Errorf("database changed: sha256 %x -> %x", before, after)
	}
	// Reads work with crispd stopped, too.
	out, errOut, err := d.Crispctl("sql", "SELECT count(*) AS n FROM pods")
	if err != nil || !strings.Contains(out, "n") {
		t.Errorf("crispctl sql SELECT = %q, %q, %v", out, errOut, err)
	}
}

// A kill -9 leaves no clean-shutdown marker; the next start notices it,
// checks the database and reports an unclean start.
func TestUncleanStartIsDetected(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	d.Restart()
	if clean := cleanStart(t, d); clean {
		t.Errorf("after kill -9: cleanStart = true, want false")
	}
	if !strings.Contains(d.Log.String(), "did not stop cleanly") {
		t.Errorf("crispd log does not report the unclean stop:\n%s", d.Log.String())
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	d.Restart()
	if clean := cleanStart(t, d); !clean {
		t.Errorf("after SIGTERM: cleanStart = false, want true")
	}
}

func cleanStart(t *testing.T, d *harness.Daemon) bool {
	t.Helper()
	out, errOut, err := d.Crispctl("info", "--json")
	var info struct {
		CleanStart bool `json:"cleanStart"`
	}
	if err != nil || json.Unmarshal([]byte(out), &info) != nil {
		t.Fatalf("crispctl info --json = %q, %q, %v", out, errOut, err)
	}
	return info.CleanStart
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}
