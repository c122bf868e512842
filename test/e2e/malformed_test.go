package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
)

// TestMalformedRequestsLeaveNothing sends the real crispd malformed pods,
// containers and calls, over the CRI socket: each is answered with the
// client error it deserves, naming the field, and afterwards the node holds
// exactly what it held before: no row, no name, no pod dir, no netns, no
// storage container, no bundle, no host file changed. docs/malformed-input.md
// lists the classes; cri/validate's tests cover them field by field.
func TestMalformedRequestsLeaveNothing(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	image := withBusybox(t, d)
	rt := d.Runtime()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	corePattern, _ := os.ReadFile("/proc/sys/kernel/core_pattern")

	good := podConfig("good")
	good.LogDirectory = filepath.Join(d.Dir, "logs")
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: good})
	if err != nil {
		t.Fatalf("RunPodSandbox(good) = %v", err)
	}

	type podEdit struct {
		name  string
		edit  func(*runtimeapi.PodSandboxConfig)
		code  codes.Code
		field string
	}
	// Cases that ask for a RuntimeHandler by name (a nil edit asks for "kata").
	handlers := map[string]string{"host IPC on the gVisor handler": "runsc", "host PID on the gVisor handler": "runsc"}
	untrusted := map[string]string{"io.kubernetes.cri.untrusted-workload": "true"}
	pods := []podEdit{
		{"sysctl out of /proc/sys", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"net.//.kernel.core_pattern": "|/bin/false"}
		}, codes.InvalidArgument, `linux.sysctls["net.//.kernel.core_pattern"]`},
		{"longer sysctl chain", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"net.//.//.//.//.//etc/passwd": "x"}
		}, codes.InvalidArgument, "linux.sysctls"},
		{"resolver option with a newline", func(c *runtimeapi.PodSandboxConfig) {
			c.DnsConfig.Options = []string{"ndots:5\nnameserver 192.0.2.1"}
		}, codes.InvalidArgument, "dns_config.options[0]"},
		{"cgroup parent with ..", func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = "/kubepods/../../../x" }, codes.InvalidArgument, "linux.cgroup_parent"},
		{"negative pod cpu shares", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: -1}
		}, codes.InvalidArgument, "cpu_shares"},
		{"NUL in log directory", func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "/var/log/\x00pods" }, codes.InvalidArgument, "log_directory"},
		{"name with a slash", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "a/../b" }, codes.InvalidArgument, "metadata.name"},
		{"unknown namespace mode", func(c *runtimeapi.PodSandboxConfig) { c.Linux.SecurityContext.NamespaceOptions.Ipc = 17 }, codes.InvalidArgument, "namespace_options.ipc"},
		{"unknown runtime handler", nil, codes.InvalidArgument, "kata"},
		{"untrusted + host network", func(c *runtimeapi.PodSandboxConfig) {
			c.Annotations = untrusted
			c.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
		}, codes.FailedPrecondition, "host network"},
		{"untrusted + privileged", func(c *runtimeapi.PodSandboxConfig) {
			c.Annotations = untrusted
			c.Linux.SecurityContext.Privileged = true
		}, codes.FailedPrecondition, "privileged"},
		{"host IPC on the gVisor handler", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Ipc = runtimeapi.NamespaceMode_NODE
		}, codes.FailedPrecondition, "host's IPC namespace"},
		{"host PID on the gVisor handler", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_NODE
		}, codes.FailedPrecondition, "host's PID namespace"},
	}
	for i, p := range pods {
		cfg := podConfig("bad-" + string(rune('a'+i)))
		handler := handlers[p.name]
		if p.edit == nil {
			handler = "kata"
		} else {
			p.edit(cfg)
		}
		_, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
		if status.Code(err) != p.code || !strings.Contains(err.Error(), p.field) {
			t.Errorf("RunPodSandbox(%s) = %v; want %v naming %q", p.name, err, p.code, p.field)
		}
	}

	type ctrEdit struct {
		name  string
		edit  func(*runtimeapi.ContainerConfig)
		code  codes.Code
		field string
	}
	ctrs := []ctrEdit{
		{"negative cpu shares", func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{CpuShares: -2}}
		}, codes.InvalidArgument, "cpu_shares"},
		{"absolute log path", func(c *runtimeapi.ContainerConfig) { c.LogPath = "/etc/cron.d/evil" }, codes.InvalidArgument, "log_path"},
		{"log path leaving the log dir", func(c *runtimeapi.ContainerConfig) { c.LogPath = "../../../etc/evil" }, codes.InvalidArgument, "log_path"},
		{"NUL in log path", func(c *runtimeapi.ContainerConfig) { c.LogPath = "x\x00.log" }, codes.InvalidArgument, "log_path"},
		{"bad hugepage size", func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2XB", Limit: 1}}}}
		}, codes.InvalidArgument, "hugepage_limits[0].page_size"},
		{"missing mount source", func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: filepath.Join(d.Dir, "no-such-dir")}}
		}, codes.InvalidArgument, "mounts[0].host_path"},
		{"relative mount target", func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "data", HostPath: d.Dir}}
		}, codes.InvalidArgument, "mounts[0].container_path"},
		{"missing device", func(c *runtimeapi.ContainerConfig) {
			c.Devices = []*runtimeapi.Device{{HostPath: "/dev/no-such-device", ContainerPath: "/dev/x", Permissions: "rwm"}}
		}, codes.InvalidArgument, "devices[0].host_path"},
		{"unknown capability", func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"CAP_EVERYTHING"}}}}
		}, codes.InvalidArgument, "add_capabilities"},
		{"privileged in an unprivileged pod", func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}}
		}, codes.InvalidArgument, "privileged"},
		{"host PID in a pod without it", func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE}}}
		}, codes.InvalidArgument, "namespace_options.pid"},
		{"image volume sub path leaving the image", func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: image}, ImageSubPath: "../../etc"}}
		}, codes.InvalidArgument, "mounts[0].image_sub_path"},
		{"NUL in an env value", func(c *runtimeapi.ContainerConfig) {
			c.Envs = []*runtimeapi.KeyValue{{Key: "A", Value: []byte("x\x00y")}}
		}, codes.InvalidArgument, "envs[0]"},
		{"image not pulled", func(c *runtimeapi.ContainerConfig) { c.Image.Image = "localhost/not/pulled:1" }, codes.NotFound, "localhost/not/pulled:1"},
	}
	for _, c := range ctrs {
		cfg := containerConfig("bad", image, "sleep", "60")
		c.edit(cfg)
		_, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cfg, SandboxConfig: good})
		if status.Code(err) != c.code || !strings.Contains(err.Error(), c.field) {
			t.Errorf("CreateContainer(%s) = %v; want %v naming %q", c.name, err, c.code, c.field)
		}
	}
	if _, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: "0123456789ab", Config: containerConfig("x", image, "true")}); status.Code(err) != codes.NotFound {
		t.Errorf("CreateContainer(unknown pod) = %v, want NotFound", err)
	}

	calls := []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"stop container, negative timeout", func() error {
			_, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: "0123456789ab", Timeout: -1})
			return err
		}, codes.InvalidArgument},
		{"status of an unknown container", func() error {
			_, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "0123456789ab"})
			return err
		}, codes.NotFound},
		{"status with a path for id", func() error {
			_, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: "../../etc/passwd"})
			return err
		}, codes.InvalidArgument},
		{"exec sync without a command", func() error {
			_, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: "0123456789ab"})
			return err
		}, codes.InvalidArgument},
		{"exec with no stream", func() error {
			_, err := rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "0123456789ab", Cmd: []string{"sh"}})
			return err
		}, codes.InvalidArgument},
		{"port forward to port 0", func() error {
			_, err := rt.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: pod.PodSandboxId, Port: []int32{0}})
			return err
		}, codes.InvalidArgument},
		{"list containers in state 42", func() error {
			_, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: 42}}})
			return err
		}, codes.InvalidArgument},
		{"pull with a NUL in the reference", func() error {
			_, err := d.Images().PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox\x00"}})
			return err
		}, codes.InvalidArgument},
		{"stop an unknown pod: already gone", func() error {
			_, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: "0123456789ab"})
			return err
		}, codes.OK},
	}
	for _, c := range calls {
		if err := c.call(); status.Code(err) != c.code {
			t.Errorf("%s = %v, want %v", c.name, err, c.code)
		}
	}

	// A request over 16 MiB is refused by the server itself.
	big := podConfig("big")
	big.Annotations = map[string]string{"big": strings.Repeat("x", 17<<20)}
	conn, err := grpc.NewClient("unix://"+d.Socket(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := runtimeapi.NewRuntimeServiceClient(conn).RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: big}); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("RunPodSandbox(17 MiB) = %v, want ResourceExhausted", err)
	}

	// Nothing was left behind: the good pod only, no container anywhere.
	if n := sqlCount(t, d, "SELECT count(*) FROM sandboxes"); n != 1 {
		t.Errorf("%d sandbox rows, want 1 (the good pod)", n)
	}
	if n := sqlCount(t, d, "SELECT count(*) FROM names"); n != 1 {
		t.Errorf("%d reserved names, want 1 (the good pod's)", n)
	}
	if n := sqlCount(t, d, "SELECT count(*) FROM containers"); n != 0 {
		t.Errorf("%d container rows, want 0", n)
	}
	if n := sqlCount(t, d, "SELECT count(*) FROM events WHERE kind = 'container'"); n != 0 {
		t.Errorf("%d container events journaled, want 0: no container was ever recorded", n)
	}
	if entries, _ := os.ReadDir(filepath.Join(d.RunDir, "pods")); len(entries) != 1 {
		t.Errorf("pod dirs: %v, want the good pod's only", entries)
	}
	if entries, _ := os.ReadDir(filepath.Join(d.RunDir, "netns")); len(entries) != 1 {
		t.Errorf("netns pins: %v, want the good pod's only", entries)
	}
	if entries, _ := os.ReadDir(filepath.Join(d.RunDir, "c")); len(entries) != 0 {
		t.Errorf("container bundles left: %v", entries)
	}
	if n := storageContainers(t, d); n != 0 {
		t.Errorf("%d storage containers left, want 0", n)
	}
	if after, _ := os.ReadFile("/proc/sys/kernel/core_pattern"); string(after) != string(corePattern) {
		t.Errorf("kernel.core_pattern changed from %q to %q", corePattern, after)
	}
}

// storageContainers counts the containers of crisp's image store.
func storageContainers(t *testing.T, d *harness.Daemon) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.StateDir, "storage", "overlay-containers", "containers.json"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	var list []json.RawMessage
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatalf("containers.json: %v", err)
	}
	return len(list)
}
