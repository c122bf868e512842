package cri

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
)

// A CreateContainer that fails at any step leaves nothing of the container
// behind: no rootfs, no runtime container, no bundle or exit file, no row
// and no reserved name; the pod is as it was.
func TestCreateContainerUndoesEveryStep(t *testing.T) {
	tests := []struct {
		name    string
		handler string
		podOpts []podOpt
		change  func(*runtimeapi.ContainerConfig)
		fail    string // the step that fails
		cancel  string // or: the request is cancelled once this step is done
		arm     func(n *testNode, podID string)
		want    codes.Code
	}{
		{name: "image missing", change: func(c *runtimeapi.ContainerConfig) { c.Image.Image = "nginx" }, want: codes.NotFound},
		{name: "image store", fail: "images.status", want: codes.Internal},
		{name: "rootfs", fail: "images.create-container", want: codes.Internal},
		{name: "spec refused", change: func(c *runtimeapi.ContainerConfig) {
			c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.com/gpu=0"}}
		}, want: codes.InvalidArgument},
		{name: "spec copy", arm: dropStorageDir, want: codes.Internal},
		{name: "log path", arm: blockLogPath, want: codes.InvalidArgument},
		{name: "infra process exited", podOpts: []podOpt{withPIDPod}, arm: func(n *testNode, podID string) {
			n.pods.exited[podID] = true
		}, want: codes.FailedPrecondition},
		{name: "infra container stopped", handler: "runsc", arm: func(n *testNode, podID string) {
			n.runsc.Kill(context.Background(), podID, 9, true)
		}, want: codes.FailedPrecondition},
		{name: "runtime create", fail: "rt.create", want: codes.Internal},
		{name: "runsc runtime create", handler: "runsc", fail: "rt.create", want: codes.Internal},
		{name: "state", cancel: "rt.create", want: codes.Canceled},
		{name: "runsc state", handler: "runsc", cancel: "rt.create", want: codes.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNode(t)
			podCfg := n.podConfig("web", tt.podOpts...)
			podID := n.runPod(t, podCfg, tt.handler)
			before := n.state(t)
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
				tt.arm(n, podID)
				before = n.state(t)
			}
			cfg := ctrConfig("app")
			if tt.change != nil {
				tt.change(cfg)
			}
			_, err := n.srv.CreateContainer(ctx, createReq(podID, podCfg, cfg))
			if got := codeOfErr(err); got != tt.want {
				t.Errorf("CreateContainer() = %v (%v), want %v", got, err, tt.want)
			}
			if step != "" && n.f.count(step) == 0 {
				t.Errorf("step %s was never reached", step)
			}
			n.assertState(t, before, "after a failed CreateContainer")
			if strings.Contains(n.logs.String(), "undo of a failed") {
				t.Errorf("undo reported a failure:\n%s", n.logs)
			}
		})
	}
}

// dropStorageDir removes the directory beside a new rootfs where a copy of
// the spec goes, so writing it fails after the bundle was made.
func dropStorageDir(n *testNode, _ string) {
	n.f.afterStep("images.create-container", func() {
		dirs, _ := filepath.Glob(filepath.Join(n.images.root, "*", "userdata"))
		for _, d := range dirs {
			os.RemoveAll(d)
		}
	})
}

// blockLogPath puts a directory where the container's log file goes.
func blockLogPath(n *testNode, _ string) {
	os.MkdirAll(filepath.Join(n.logDir, "web", "app", "0.log"), 0o755)
}

// CreateContainer makes the rootfs, the bundle with the spec (and its copy
// beside the rootfs), the runtime container under a monitor, and a row in
// state created; RemoveContainer takes it all away.
func TestCreateContainerSideEffects(t *testing.T) {
	n := newTestNode(t)
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	before := n.state(t)
	id := n.createCtr(t, podID, podCfg, ctrConfig("app"))
	c := n.ctrRow(t, id)
	if c.State != db.ContainerCreated || c.SandboxID != podID || c.ImageRef != "sha256:"+testImage.ID {
		t.Errorf("row = %+v, want created in %s from the test image", c, podID)
	}
	if want := filepath.Join(n.logDir, "web", "app", "0.log"); c.LogPath != want {
		t.Errorf("log path = %q, want %q", c.LogPath, want)
	}
	spec, err := n.files.Container(id).ReadSpec()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(spec.Process.Args, " "); got != "sleep 1000" {
		t.Errorf("spec args = %q, want the command", got)
	}
	if spec.Root.Path != n.images.rootfs[id].Mount {
		t.Errorf("spec root = %q, want the rootfs %q", spec.Root.Path, n.images.rootfs[id].Mount)
	}
	if _, err := os.Stat(filepath.Join(n.images.rootfs[id].Dir, "config.json")); err != nil {
		t.Errorf("no copy of the spec beside the rootfs: %v", err)
	}
	opts := n.runc.ctrs[id].opts
	if opts.LogPath != c.LogPath {
		t.Errorf("runtime create opts = %+v, want the log path", opts)
	}
	if _, err := n.srv.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("RemoveContainer() = %v", err)
	}
	n.assertState(t, before, "after RemoveContainer")
}

// A container kubelet asks no log for still gets one: its monitor needs it.
func TestCreateContainerWithoutLogPath(t *testing.T) {
	n := newTestNode(t)
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	cfg := ctrConfig("app")
	cfg.LogPath = ""
	id := n.createCtr(t, podID, podCfg, cfg)
	if got, want := n.runc.ctrs[id].opts.LogPath, n.files.Container(id).ConsoleLog(); got != want {
		t.Errorf("log path = %q, want the console log %q", got, want)
	}
	// The pod's log directory is the one stored with the pod, whatever
	// the request's copy of the pod config says.
	podCfg.LogDirectory = ""
	if _, err := n.srv.CreateContainer(context.Background(), createReq(podID, podCfg, ctrConfig("other"))); err != nil {
		t.Errorf("CreateContainer() with a log path = %v, want the stored log directory used", err)
	}
}

// Containers are only made in ready pods.
func TestCreateContainerNeedsReadyPod(t *testing.T) {
	n := newTestNode(t)
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	if _, err := n.srv.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	before := n.state(t)
	_, err := n.srv.CreateContainer(context.Background(), createReq(podID, podCfg, ctrConfig("app")))
	if codeOfErr(err) != codes.FailedPrecondition {
		t.Errorf("CreateContainer() in a stopped pod = %v, want FailedPrecondition", err)
	}
	_, err = n.srv.CreateContainer(context.Background(), createReq(strings.Repeat("f", 64), podCfg, ctrConfig("app")))
	if codeOfErr(err) != codes.NotFound {
		t.Errorf("CreateContainer() in an unknown pod = %v, want NotFound", err)
	}
	n.assertState(t, before, "after refused creates")
}

// kubelet's retry of a CreateContainer that timed out joins the call in
// flight; another config under the same name is refused; a retry of a call
// that failed meanwhile makes the container itself.
func TestCreateContainerRetry(t *testing.T) {
	n := newTestNode(t)
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	cfg := ctrConfig("app")
	other := ctrConfig("app")
	other.Command = []string{"true"}

	reached, release := make(chan struct{}), make(chan struct{})
	calls := 0
	n.f.beforeStep("rt.create", func() {
		if calls++; calls == 1 {
			close(reached)
			<-release
		}
	})
	type result struct {
		id  string
		err error
	}
	create := func(ctx context.Context, cfg *runtimeapi.ContainerConfig) result {
		resp, err := n.srv.CreateContainer(ctx, createReq(podID, podCfg, cfg))
		return result{resp.GetContainerId(), err}
	}
	first := make(chan result)
	go func() { first <- create(context.Background(), cfg) }()
	<-reached
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if r := create(ctx, cfg); codeOfErr(r.err) != codes.DeadlineExceeded {
		t.Errorf("retry while the first call is blocked = %v, want it to wait until its deadline", r.err)
	}
	if r := create(context.Background(), other); codeOfErr(r.err) != codes.AlreadyExists {
		t.Errorf("other config under the same name = %v, want AlreadyExists", r.err)
	}
	second := make(chan result)
	go func() { second <- create(context.Background(), cfg) }()
	close(release)
	r1, r2 := <-first, <-second
	if r1.err != nil || r2.err != nil || r1.id != r2.id {
		t.Fatalf("first = %+v, retry = %+v; want the same container", r1, r2)
	}
	if got := n.f.count("images.create-container"); got != 1 {
		t.Errorf("%d root filesystems made, want 1", got)
	}
	if n.runc.creates[r1.id] != 1 {
		t.Errorf("runtime creates = %v, want one", n.runc.creates)
	}
	if r := create(context.Background(), cfg); r.err != nil || r.id != r1.id {
		t.Errorf("retry after the container was made = %+v, want %s", r, r1.id)
	}
	if r := create(context.Background(), other); codeOfErr(r.err) != codes.AlreadyExists {
		t.Errorf("other config after the container was made = %v, want AlreadyExists", r.err)
	}
}

func TestCreateContainerRetryAfterFailedCall(t *testing.T) {
	n := newTestNode(t)
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	cfg := ctrConfig("app")
	id := retryAfterFailedCall(t, n, "rt.create", func() (string, error) {
		resp, err := n.srv.CreateContainer(context.Background(), createReq(podID, podCfg, cfg))
		return resp.GetContainerId(), err
	})
	if c := n.ctrRow(t, id); c.State != db.ContainerCreated {
		t.Errorf("container is %s, want created", c.State)
	}
}
