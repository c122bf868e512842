package cri

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/db/record"
	"github.com/crisp-cri/crisp/runtimes/oci"
)

// A RunPodSandbox that fails at any step leaves nothing behind: not in the
// fakes, not in the database (no row, no reserved name), not on disk; and
// kubelet sees the code the failure deserves.
func TestRunPodSandboxUndoesEveryStep(t *testing.T) {
	tests := []struct {
		name    string
		handler string
		opts    []podOpt
		fail    string // the step that fails
		cancel  string // or: the request is cancelled once this step is done
		arm     func(n *testNode)
		want    codes.Code
	}{
		{name: "pod dir", fail: "pods.create", want: codes.Internal},
		{name: "pod record", arm: blockPodRecord, want: codes.Internal},
		{name: "network namespace", fail: "net.new-netns", want: codes.Internal},
		{name: "CNI", fail: "net.setup", want: codes.Internal},
		{name: "sysctls", opts: []podOpt{withSysctls}, fail: "pods.sysctls", want: codes.Internal},
		{name: "infra process", opts: []podOpt{withPIDPod}, fail: "pods.start-infra", want: codes.Internal},
		{name: "infra container create", handler: "runsc", fail: "rt.create", want: codes.Internal},
		{name: "infra container start", handler: "runsc", fail: "rt.start", want: codes.Internal},
		{name: "mark ready", cancel: "pods.sysctls", want: codes.Canceled},
		{name: "mark ready, host network", opts: []podOpt{withHostNetwork}, cancel: "pods.sysctls", want: codes.Canceled},
		{name: "mark ready after infra process", opts: []podOpt{withPIDPod}, cancel: "pods.start-infra", want: codes.Canceled},
		{name: "mark ready after infra container", handler: "runsc", cancel: "rt.start", want: codes.Canceled},
		{name: "CNI cancelled", cancel: "net.new-netns", want: codes.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNode(t)
			empty := n.state(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			step := tt.fail
			switch {
			case tt.fail != "":
				n.f.failAt(tt.fail, errInjected)
			case tt.cancel != "":
				step = tt.cancel
				n.f.afterStep(tt.cancel, cancel)
			}
			if tt.arm != nil {
				tt.arm(n)
			}
			cfg := n.podConfig("web", tt.opts...)
			_, err := n.srv.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: tt.handler})
			if got := codeOfErr(err); got != tt.want {
				t.Errorf("RunPodSandbox() = %v (%v), want %v", got, err, tt.want)
			}
			if step != "" && n.f.count(step) == 0 {
				t.Errorf("step %s was never reached", step)
			}
			n.assertState(t, empty, "after a failed RunPodSandbox")
			if strings.Contains(n.logs.String(), "undo of a failed") {
				t.Errorf("undo reported a failure:\n%s", n.logs)
			}
			// Nothing is in the way of the next attempt.
			n.f.failAt(tt.fail, nil)
			n.f.afterStep(tt.cancel, nil)
			n.f.afterStep("pods.create", nil)
			id := n.runPod(t, cfg, tt.handler)
			if sb := n.podRow(t, id); sb.State != db.SandboxReady {
				t.Errorf("the next attempt made a pod %s, want ready", sb.State)
			}
		})
	}
}

// blockPodRecord makes writing the pod's record fail: a directory stands
// where the record goes.
func blockPodRecord(n *testNode) {
	n.f.afterStep("pods.create", func() {
		dirs, _ := filepath.Glob(filepath.Join(n.files.Pods(), "*"))
		for _, d := range dirs {
			os.Mkdir(filepath.Join(d, record.PodFile), 0o700)
		}
	})
}

// An undo that fails leaves the row in creating, with its name, for the
// reconciler to finish: nothing is forgotten.
func TestRunPodSandboxFailedUndoKeepsRow(t *testing.T) {
	n := newTestNode(t)
	n.f.failAt("net.setup", errInjected)
	n.f.failAt("net.remove-netns", errInjected)
	_, err := n.srv.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: n.podConfig("web")})
	if err == nil {
		t.Fatal("RunPodSandbox() = nil, want the CNI failure")
	}
	st := n.state(t)
	if len(st.Sandboxes) != 1 || !strings.HasSuffix(st.Sandboxes[0], " creating") {
		t.Errorf("rows = %v, want one pod still creating", st.Sandboxes)
	}
	if len(st.Names) != 1 {
		t.Errorf("names = %v, want the pod's still reserved", st.Names)
	}
	if !strings.Contains(n.logs.String(), "undo of a failed RunPodSandbox incomplete") {
		t.Errorf("the incomplete undo was not logged:\n%s", n.logs)
	}
	if len(st.Pods) != 0 {
		t.Errorf("pods = %v, want the pod dir removed: the undos after the failed one still run", st.Pods)
	}
}

// RunPodSandbox makes what each kind of pod needs, and RemovePodSandbox
// takes all of it away again.
func TestRunPodSandboxSideEffects(t *testing.T) {
	tests := []struct {
		name      string
		handler   string
		opts      []podOpt
		netns     bool
		infraProc bool
		infraCtr  bool
		sysctls   bool
	}{
		{name: "runc", netns: true, sysctls: true},
		{name: "runc, host network", opts: []podOpt{withHostNetwork}, sysctls: true},
		{name: "runc, shared PID namespace", opts: []podOpt{withPIDPod}, netns: true, infraProc: true, sysctls: true},
		{name: "runsc", handler: "runsc", netns: true, infraCtr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNode(t)
			empty := n.state(t)
			id := n.runPod(t, n.podConfig("web", append(tt.opts, withSysctls)...), tt.handler)
			sb := n.podRow(t, id)
			if (sb.NetNSPath != "") != tt.netns || (len(sb.IPs) == 1) != tt.netns {
				t.Errorf("netns %q, IPs %v; want a network of its own: %v", sb.NetNSPath, sb.IPs, tt.netns)
			}
			if a, ok := n.net.attached[id]; ok != tt.netns || ok && (a.Name != "web" || len(a.PortMappings) != 1 || a.PortMappings[0].HostPort != 8080) {
				t.Errorf("attachment %+v, %v; want one host port, attached: %v", a, ok, tt.netns)
			}
			if _, ok := n.pods.infra[id]; ok != tt.infraProc {
				t.Errorf("infra process: %v, want %v", ok, tt.infraProc)
			}
			if got := slices.Contains(n.runsc.ids(), id+" running"); got != tt.infraCtr || (sb.InfraID == id) != tt.infraCtr {
				t.Errorf("infra container: %v, infra id %q; want %v", got, sb.InfraID, tt.infraCtr)
			}
			if got := len(n.pods.sysctls) == 1 && n.pods.sysctls[0]["kernel.shm_rmid_forced"] == "1"; got != tt.sysctls {
				t.Errorf("sysctls set: %v (%v), want %v", got, n.pods.sysctls, tt.sysctls)
			}
			rec, err := record.ReadPod(n.pods.Dir(id))
			if err != nil || rec.Sandbox.ID != id {
				t.Errorf("pod record = %+v, %v", rec, err)
			}
			if _, err := n.srv.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
				t.Fatalf("RemovePodSandbox() = %v", err)
			}
			n.assertState(t, empty, "after RemovePodSandbox")
		})
	}
}

// kubelet's retry of a RunPodSandbox that timed out joins the call still
// in flight: it gets the same pod, and the pod is made once. A call under
// the same name with another config is refused at once.
func TestRunPodSandboxRetryJoinsCallInFlight(t *testing.T) {
	n := newTestNode(t)
	cfg := n.podConfig("web")
	reached, release := make(chan struct{}), make(chan struct{})
	n.f.beforeStep("net.setup", func() {
		close(reached)
		<-release
	})
	type result struct {
		id  string
		err error
	}
	run := func(ctx context.Context, cfg *runtimeapi.PodSandboxConfig) result {
		resp, err := n.srv.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		return result{resp.GetPodSandboxId(), err}
	}
	first := make(chan result)
	go func() { first <- run(context.Background(), cfg) }()
	<-reached

	// While the first call works, the retry waits for it...
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if r := run(ctx, cfg); codeOfErr(r.err) != codes.DeadlineExceeded {
		t.Errorf("retry while the first call is blocked = %v, want it to wait until its deadline", r.err)
	}
	// ...another config under the same name is refused...
	if r := run(context.Background(), n.podConfig("web", withHostname("other"))); codeOfErr(r.err) != codes.AlreadyExists {
		t.Errorf("other config under the same name = %v, want AlreadyExists", r.err)
	}
	// ...and the pod is not listed until it is ready.
	if l, _ := n.srv.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{}); len(l.Items) != 0 {
		t.Errorf("ListPodSandbox() = %v while the pod is being made, want nothing", l.Items)
	}
	second := make(chan result)
	go func() { second <- run(context.Background(), cfg) }()
	close(release)
	r1, r2 := <-first, <-second
	if r1.err != nil || r2.err != nil || r1.id != r2.id {
		t.Fatalf("first = %+v, retry = %+v; want the same pod", r1, r2)
	}
	for _, step := range []string{"pods.create", "net.new-netns", "net.setup", "pods.sysctls"} {
		if got := n.f.count(step); got != 1 {
			t.Errorf("%s ran %d times, want once", step, got)
		}
	}
	if st := n.state(t); len(st.Sandboxes) != 1 || len(st.NetNS) != 1 {
		t.Errorf("rows %v, attachments %v; want one pod", st.Sandboxes, st.NetNS)
	}
	// Once it is ready, a retry still gets it; another config still not.
	if r := run(context.Background(), cfg); r.err != nil || r.id != r1.id {
		t.Errorf("retry after the pod is ready = %+v, want %s", r, r1.id)
	}
	if r := run(context.Background(), n.podConfig("web", withHostname("other"))); codeOfErr(r.err) != codes.AlreadyExists {
		t.Errorf("other config after the pod is ready = %v, want AlreadyExists", r.err)
	}
	// A retry of a pod that was stopped meanwhile is refused: kubelet makes
	// a new attempt.
	if _, err := n.srv.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: r1.id}); err != nil {
		t.Fatal(err)
	}
	if r := run(context.Background(), cfg); codeOfErr(r.err) != codes.FailedPrecondition {
		t.Errorf("retry of a stopped pod = %v, want FailedPrecondition", r.err)
	}
}

// A retry that joined a call which then failed and undid itself does the
// work itself, rather than report the first call's row as not found.
func TestRunPodSandboxRetryAfterFailedCall(t *testing.T) {
	n := newTestNode(t)
	cfg := n.podConfig("web")
	id := retryAfterFailedCall(t, n, "net.setup", func() (string, error) {
		resp, err := n.srv.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg})
		return resp.GetPodSandboxId(), err
	})
	if sb := n.podRow(t, id); sb.State != db.SandboxReady {
		t.Errorf("pod is %s, want ready", sb.State)
	}
}

// retryAfterFailedCall makes call twice: the first call fails at step, but
// only once the second (kubelet's retry) has found its row and waits for
// it. The retry must then do the work itself; its id is returned.
func retryAfterFailedCall(t *testing.T, n *testNode, step string, call func() (string, error)) string {
	t.Helper()
	reached, release := make(chan struct{}), make(chan struct{})
	calls := 0
	n.f.beforeStep(step, func() {
		if calls++; calls == 1 {
			close(reached)
			<-release
			n.f.failAt(step, errInjected)
			return
		}
		n.f.failAt(step, nil)
	})
	first := make(chan error)
	go func() {
		_, err := call()
		first <- err
	}()
	<-reached
	second := make(chan error)
	var id string
	go func() {
		var err error
		id, err = call()
		second <- err
	}()
	time.Sleep(50 * time.Millisecond) // the retry finds the first call's row and waits
	close(release)
	if err := <-first; !errors.Is(err, errInjected) {
		t.Errorf("first call = %v, want the injected failure", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("retry = %v, want it to do the work", err)
	}
	return id
}

// A host-network pod cannot run where gVisor's netstack would take its
// interfaces: it has none of its own; no gVisor pod can share the host's
// IPC or PID namespace.
func TestCheckPodNamespaces(t *testing.T) {
	netstack := &fakeRuntime{h: oci.Handler{Name: "runsc", Type: oci.TypeRunsc, Network: oci.NetworkSandbox}}
	hostMode := &fakeRuntime{h: oci.Handler{Name: "runsc", Type: oci.TypeRunsc, Network: oci.NetworkHost}}
	runc := &fakeRuntime{h: oci.Handler{Name: "runc", Type: oci.TypeRunc}}
	n := &testNode{logDir: t.TempDir()}
	tests := []struct {
		name    string
		cfg     *runtimeapi.PodSandboxConfig
		rt      Runtime
		wantErr bool
	}{
		{"host network on netstack", n.podConfig("p", withHostNetwork), netstack, true},
		{"pod network on netstack", n.podConfig("p"), netstack, false},
		{"host network on gVisor in host mode", n.podConfig("p", withHostNetwork), hostMode, false},
		{"host network on runc", n.podConfig("p", withHostNetwork), runc, false},
		{"no runtime", n.podConfig("p", withHostNetwork), nil, false},
		{"host IPC on gVisor", n.podConfig("p", withHostIPC), hostMode, true},
		{"host PID on gVisor", n.podConfig("p", withHostPID), netstack, true},
		{"host PID on runc", n.podConfig("p", withHostPID), runc, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPodNamespaces(tt.cfg, "runsc", tt.rt)
			if (err != nil) != tt.wantErr || err != nil && codeOfErr(err) != codes.FailedPrecondition {
				t.Errorf("checkPodNamespaces() = %v, want error %v (FailedPrecondition)", err, tt.wantErr)
			}
		})
	}
}

// waitFor waits up to 5s for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
