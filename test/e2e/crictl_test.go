package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
)

// The crictl workflow of a node operator, on runc and on runsc (a pod
// annotated untrusted): runp, create, start, exec, logs, ps, pods,
// inspect, inspectp, stats, stop, rm, stopp, rmp.
func TestCrictlPodAndContainerOnRunc(t *testing.T) {
	harness.RequireRoot(t)
	crictlWorkflow(t, nil, "runc", "default")
}

func TestCrictlPodAndContainerOnRunsc(t *testing.T) {
	harness.RequireRoot(t)
	harness.RequireTool(t, "runsc")
	crictlWorkflow(t, map[string]string{"io.kubernetes.cri.untrusted-workload": "true"}, "runsc", "annotation")
}

func crictlWorkflow(t *testing.T, annotations map[string]string, handler, reason string) {
	d := harness.Start(t)
	image := withBusybox(t, d)
	dir := t.TempDir()
	pod := filepath.Join(dir, "pod.json")
	ctr := filepath.Join(dir, "ctr.json")
	writeJSON(t, pod, map[string]any{
		"metadata":      map[string]any{"name": "cli", "namespace": "e2e", "uid": "uid-cli"},
		"hostname":      "cli",
		"log_directory": filepath.Join(dir, "logs"),
		"labels":        map[string]string{"app": "cli"},
		"annotations":   annotations,
		"linux":         map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"pid": 1}}},
	})
	writeJSON(t, ctr, map[string]any{
		"metadata": map[string]any{"name": "web"},
		"image":    map[string]any{"image": image},
		"command":  []string{"sh", "-c", "echo started; exec sleep 600"},
		"log_path": "web.log",
	})
	run := func(args ...string) string {
		t.Helper()
		out, errOut, err := d.Crictl(args...)
		if err != nil {
			t.Fatalf("crictl %v: %v\n%s%s", args, err, out, errOut)
		}
		return strings.TrimSpace(out)
	}
	podID := run("runp", pod)
	ctrID := run("create", "--no-pull", podID, ctr, pod)
	run("start", ctrID)
	if out := run("exec", "--sync", ctrID, "hostname"); out != "cli" {
		t.Errorf("crictl exec --sync hostname = %q, want cli", out)
	}
	// Streaming exec through crispd's streaming server.
	if out := run("exec", ctrID, "sh", "-c", "echo streamed; id -u"); out != "streamed\n0" {
		t.Errorf("crictl exec (streaming) = %q, want streamed and uid 0", out)
	}
	// With a terminal: runc is asked with --tty, runsc with the process's
	// terminal flag alone (it has no --tty).
	if out, err := d.CrictlInTerminal("exec", "-i", "-t", ctrID, "sh", "-c", "test -t 0 && test -t 1 && echo on-a-terminal"); err != nil || !strings.Contains(out, "on-a-terminal") {
		t.Errorf("crictl exec -it (stdin and stdout a terminal?) = %q, %v; want on-a-terminal", out, err)
	}
	// Attach: a container reading stdin (stdin_once) gets what crictl
	// sends, and its answer comes back (conmon's attach socket on runc,
	// crisp's monitor's on gVisor).
	reader := filepath.Join(dir, "reader.json")
	writeJSON(t, reader, map[string]any{
		"metadata": map[string]any{"name": "reader"}, "image": map[string]any{"image": image},
		"command": []string{"sh", "-c", "read l; echo got $l"}, "log_path": "reader.log", "stdin": true, "stdin_once": true,
	})
	readerID := run("create", "--no-pull", podID, reader, pod)
	run("start", readerID)
	if out, errOut, err := d.CrictlWithInput("hello\n", "attach", "-i", readerID); err != nil || !strings.Contains(out, "got hello") {
		t.Errorf("crictl attach -i = %q, %v (%s); want got hello", out, err, errOut)
	}
	run("stop", readerID)
	run("rm", readerID)
	var logs string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if logs = run("logs", ctrID); logs != "" {
			break
		}
	}
	if logs != "started" {
		t.Errorf("crictl logs = %q, want started", logs)
	}
	if ps := run("ps", "-q"); ps != ctrID {
		t.Errorf("crictl ps -q = %q, want %s", ps, ctrID)
	}
	if pods := run("pods", "-q", "--label", "app=cli"); pods != podID {
		t.Errorf("crictl pods -q = %q, want %s", pods, podID)
	}
	var inspect struct {
		Status struct {
			State string `json:"state"`
			Image struct {
				Image string `json:"image"`
			} `json:"image"`
			LogPath string `json:"logPath"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(run("inspect", ctrID)), &inspect); err != nil || inspect.Status.State != "CONTAINER_RUNNING" ||
		inspect.Status.Image.Image != image || inspect.Status.LogPath != filepath.Join(dir, "logs", "web.log") {
		t.Errorf("crictl inspect = %+v, %v", inspect, err)
	}
	var inspectp struct {
		Status struct {
			State          string `json:"state"`
			RuntimeHandler string `json:"runtimeHandler"`
			Network        struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
		Info map[string]any `json:"info"`
	}
	if err := json.Unmarshal([]byte(run("inspectp", podID)), &inspectp); err != nil || inspectp.Status.State != "SANDBOX_READY" ||
		!inSubnet(inspectp.Status.Network.IP, harness.TestSubnet) || inspectp.Info["trustReason"] != reason || inspectp.Status.RuntimeHandler != handler {
		t.Errorf("crictl inspectp = %+v, %v; want ready, an IP, handler %s (%s)", inspectp, err, handler, reason)
	}
	// The runtime itself, not crisp, lists the container.
	if !listed(t, handler, filepath.Join(d.RunDir, handler), ctrID) {
		t.Errorf("%s list lacks container %s", handler, ctrID)
	}
	var stats struct {
		Stats []struct {
			Memory struct {
				WorkingSetBytes struct{ Value string } `json:"workingSetBytes"`
			} `json:"memory"`
			CPU struct {
				UsageCoreNanoSeconds struct{ Value string } `json:"usageCoreNanoSeconds"`
			} `json:"cpu"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(run("stats", "-o", "json")), &stats); err != nil || len(stats.Stats) != 1 ||
		stats.Stats[0].Memory.WorkingSetBytes.Value == "" || stats.Stats[0].CPU.UsageCoreNanoSeconds.Value == "" {
		t.Errorf("crictl stats = %+v, %v; want one container with memory and CPU", stats, err)
	}
	// kubelet's log rotation: rename, then ask conmon to reopen.
	logPath := filepath.Join(dir, "logs", "web.log")
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	run("logs", "--reopen", ctrID) // crictl's name for ReopenContainerLog, then it prints the (new, empty) log
	if _, err := os.Stat(logPath); err != nil {
		t.Errorf("log file not reopened: %v", err)
	}
	// An image a container uses stays.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.Images().RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: image}}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("RemoveImage(in use) = %v, want FailedPrecondition", err)
	}
	run("stop", "--timeout", "1", ctrID)
	if ps := run("ps", "-a", "--state", "exited", "-q"); ps != ctrID {
		t.Errorf("crictl ps -a --state exited = %q, want %s", ps, ctrID)
	}
	run("rm", ctrID)
	run("stopp", podID)
	run("rmp", podID)
	if pods := run("pods", "-q"); pods != "" {
		t.Errorf("crictl pods after rmp = %q, want none", pods)
	}
	assertNoPodLeftovers(t, d)
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func inSubnet(ip, cidr string) bool {
	_, subnet, err := net.ParseCIDR(cidr)
	return err == nil && subnet.Contains(net.ParseIP(ip))
}
