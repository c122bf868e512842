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
		priv := podConfig("privileged")
		priv.Annotations = untrusted
		priv.Linux.SecurityContext.Privileged = true
		if _, h, why := trustOf(t, d, priv); h != "runc" || why != "privileged" {
			t.Errorf("privileged annotated pod: %s (%s), want runc (privileged)", h, why)
		}
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
