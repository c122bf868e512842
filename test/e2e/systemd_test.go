package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crisp-cri/crisp/test/harness"
)

// TestSystemdUnitVerifies checks contrib/systemd/crisp.service with
// systemd-analyze verify, its ExecStart pointed at the crispd under test
// (verify insists the binary exists), and that it keeps the settings
// containers' survival depends on.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := harness.RequireTool(t, "systemd-analyze")
	unit, err := os.ReadFile(filepath.Join("..", "..", "contrib", "systemd", "crisp.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"\nType=notify\n", "\nKillMode=process\n", "\nDelegate=yes\n", "\nExecStart=/usr/local/bin/crispd\n"} {
		if !strings.Contains(string(unit), must) {
			t.Errorf("crisp.service lacks %q", strings.TrimSpace(must))
		}
	}
	crispd := filepath.Join(harness.Bins(t), "crispd")
	copied := strings.Replace(string(unit), "ExecStart=/usr/local/bin/crispd", "ExecStart="+crispd, 1)
	path := filepath.Join(t.TempDir(), "crisp.service")
	if err := os.WriteFile(path, []byte(copied), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "crisp.service") {
		t.Errorf("systemd-analyze verify crisp.service: %v\n%s", err, out)
	}
}

// TestSystemdNotify runs crispd with NOTIFY_SOCKET, as a Type=notify unit
// does: it sends READY=1 once its CRI socket serves and STOPPING=1 on
// SIGTERM.
func TestSystemdNotify(t *testing.T) {
	harness.RequireRoot(t)
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d := harness.Start(t, harness.WithEnv("NOTIFY_SOCKET="+sock))

	ready := readNotify(t, conn)
	if ready != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", ready)
	}
	// READY=1 came after the socket: the CRI answers now.
	if _, _, err := d.Crictl("version"); err != nil {
		t.Fatalf("crictl version after READY=1: %v", err)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := readNotify(t, conn); got != "STOPPING=1" {
		t.Errorf("notification at SIGTERM %q, want STOPPING=1", got)
	}
}

func readNotify(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no systemd notification: %v", err)
	}
	return strings.TrimSpace(string(buf[:n]))
}
