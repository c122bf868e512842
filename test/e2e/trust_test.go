package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
)

// trustOf runs a pod and returns its handler and trust reason as
// PodSandboxStatus reports them.
func trustOf(t *testing.T, d *harness.Daemon, pc *runtimeapi.PodSandboxConfig) (id, handler, reason string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt := d.Runtime()
	r, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
	if err != nil {
		t.Fatalf("RunPodSandbox(%s) = %v", pc.Metadata.Name, err)
	}
	st, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: r.PodSandboxId, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	json.Unmarshal([]byte(st.Info["info"]), &info)
	reason, _ = info["trustReason"].(string)
	return r.PodSandboxId, st.Status.RuntimeHandler, reason
}

// listed reports whether the runtime itself (not crisp) lists id under root.
func listed(t *testing.T, runtime, root, id string) bool {
	t.Helper()
	out, err := exec.Command(runtime, "--root", root, "list").CombinedOutput()
	if err != nil {
		t.Fatalf("%s list: %v: %s", runtime, err, out)
	}
	return strings.Contains(string(out), id)
}

func TestTrustMatrix(t *testing.T) {
	harness.RequireRoot(t)
	harness.RequireTool(t, "runsc")
	untrusted := map[string]string{"io.kubernetes.cri.untrusted-workload": "true"}

	t.Run("default trust", func(t *testing.T) {
		d := harness.Start(t)
		runscRoot := filepath.Join(d.RunDir, "runsc")
		if _, h, why := trustOf(t, d, podConfig("plain")); h != "runc" || why != "default" {
			t.Errorf("default pod: %s (%s), want runc (default)", h, why)
		}
		pc := podConfig("hinted")
		pc.Annotations = untrusted
		id, h, why := trustOf(t, d, pc)
		if h != "runsc" || why != "annotation" || !listed(t, "runsc", runscRoot, id) {
			t.Errorf("annotated pod: %s (%s), runsc lists it: %v; want runsc (annotation)", h, why, listed(t, "runsc", runscRoot, id))
		}
		// An untrusted pod that asks for host access never leaves the
		// sandbox silently: it is refused, and nothing is recorded.
		before := sqlCount(t, d, "SELECT count(*) FROM sandboxes")
		for _, edit := range []struct {
			what string
			set  func(*runtimeapi.PodSandboxConfig)
		}{
			{"privileged", func(c *runtimeapi.PodSandboxConfig) { c.Linux.SecurityContext.Privileged = true }},
			{"host network", func(c *runtimeapi.PodSandboxConfig) {
				c.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
			}},
			{"host PID", func(c *runtimeapi.PodSandboxConfig) {
				c.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_NODE
			}},
			{"host IPC", func(c *runtimeapi.PodSandboxConfig) {
				c.Linux.SecurityContext.NamespaceOptions.Ipc = runtimeapi.NamespaceMode_NODE
			}},
		} {
			pc := podConfig("hostaccess")
			pc.Annotations = untrusted
			edit.set(pc)
			_, err := d.Runtime().RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: pc})
			if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), edit.what) {
				t.Errorf("untrusted + %s = %v, want FailedPrecondition naming %q", edit.what, err, edit.what)
			}
		}
		if n := sqlCount(t, d, "SELECT count(*) FROM sandboxes"); n != before {
			t.Errorf("%d sandbox rows after the refusals, want %d", n, before)
		}
		if n := sqlCount(t, d, "SELECT count(*) FROM names WHERE name LIKE '%hostaccess%'"); n != 0 {
			t.Errorf("%d names reserved for refused pods", n)
		}
		trusted := podConfig("privileged-trusted")
		trusted.Linux.SecurityContext.Privileged = true
		if _, h, why := trustOf(t, d, trusted); h != "runc" || why != "privileged" {
			t.Errorf("privileged pod: %s (%s), want runc (privileged)", h, why)
		}
	})

	t.Run("untrusted host access allowed on trusted", func(t *testing.T) {
		d := harness.Start(t, harness.WithTOML("[trust]\nuntrusted_host_access = \"trusted\""))
		hostNet := podConfig("hostnet")
		hostNet.Annotations = untrusted
		hostNet.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
		if _, h, why := trustOf(t, d, hostNet); h != "runc" || why != "privileged" {
			t.Errorf("host-network annotated pod: %s (%s), want runc (privileged)", h, why)
		}
	})

	t.Run("default untrusted", func(t *testing.T) {
		d := harness.Start(t, harness.WithTOML("[trust]\ndefault_workload_trust = \"untrusted\""))
		id, h, why := trustOf(t, d, podConfig("plain"))
		if h != "runsc" || why != "default-untrusted" || !listed(t, "runsc", filepath.Join(d.RunDir, "runsc"), id) {
			t.Errorf("unannotated pod: %s (%s), want runsc (default-untrusted) listed by runsc", h, why)
		}
		// A RuntimeClass cannot take a pod out of the sandbox here.
		_, err := d.Runtime().RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podConfig("rc"), RuntimeHandler: "runc"})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "allow_trusted_runtime_class") {
			t.Errorf("RuntimeClass runc under default untrusted = %v, want FailedPrecondition naming allow_trusted_runtime_class", err)
		}
		hostPID := podConfig("hostpid")
		hostPID.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_NODE
		_, err = d.Runtime().RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: hostPID})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "host PID") {
			t.Errorf("host-PID pod under default untrusted = %v, want FailedPrecondition", err)
		}
	})

	t.Run("default untrusted with trusted runtime class allowed", func(t *testing.T) {
		d := harness.Start(t, harness.WithTOML("[trust]\ndefault_workload_trust = \"untrusted\"\nallow_trusted_runtime_class = true"))
		pc := podConfig("rc")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r, err := d.Runtime().RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc, RuntimeHandler: "runc"})
		if err != nil {
			t.Fatalf("RuntimeClass runc with allow_trusted_runtime_class = %v", err)
		}
		st, err := d.Runtime().PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: r.PodSandboxId})
		if err != nil || st.Status.RuntimeHandler != "runc" {
			t.Errorf("status = %v, %v; want handler runc", st, err)
		}
	})

	t.Run("no untrusted runtime", func(t *testing.T) {
		d := harness.Start(t, harness.WithTOML("[trust]\nuntrusted_runtime = \"\""))
		pc := podConfig("refused")
		pc.Annotations = untrusted
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := d.Runtime().RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "untrusted") {
			t.Errorf("untrusted pod without runsc = %v, want FailedPrecondition", err)
		}
		assertNoPodLeftovers(t, d)
	})
}
