package cri

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/cgstats"
	"github.com/crisp-cri/crisp/runtimes/layout"
	"github.com/crisp-cri/crisp/runtimes/network"
	"github.com/crisp-cri/crisp/runtimes/oci"
	"github.com/crisp-cri/crisp/runtimes/pod"
	"github.com/crisp-cri/crisp/runtimes/storage"
	"github.com/crisp-cri/crisp/runtimes/trust"
)

// testNode is a CRI server over a real SQLite store and a real layout in
// a temp dir, with fakes for everything that needs root.
type testNode struct {
	srv    *Server
	store  *db.Store
	files  layout.Layout
	f      *faults
	images *fakeImages
	net    *fakeNetwork
	pods   *fakePods
	runc   *fakeRuntime
	runsc  *fakeRuntime
	cg     *fakeCgroups
	layers *fakeLayers
	netst  *fakeNetStats
	logDir string
	logs   *syncBuffer
}

// syncBuffer is a buffer the server may log to from any goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newTestNode(t *testing.T) *testNode {
	t.Helper()
	dir := t.TempDir()
	store, err := db.Open(context.Background(), filepath.Join(dir, "state.db"), db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	files := layout.New(filepath.Join(dir, "run"))
	for _, d := range files.Dirs() {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	graph := filepath.Join(dir, "storage")
	if err := os.Mkdir(graph, 0o700); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f := newFaults()
	conmon := fakeConmon(t)
	n := &testNode{
		store: store, files: files, f: f, logDir: filepath.Join(dir, "logs"), logs: &syncBuffer{},
		images: &fakeImages{f: f, root: graph, images: []storage.Image{testImage}, rootfs: map[string]storage.Rootfs{}, imageOf: map[string]string{}},
		net:    &fakeNetwork{f: f, dir: files.NetNS(), attached: map[string]network.Attachment{}, ips: map[string]string{}},
		pods:   &fakePods{f: f, root: files.Pods(), pods: map[string]pod.Options{}, infra: map[string]pod.Infra{}, exited: map[string]bool{}},
		cg:     &fakeCgroups{samples: map[string]cgstats.Sample{}},
		layers: &fakeLayers{usage: map[string]storage.LayerUsage{}},
		netst:  &fakeNetStats{ifs: map[string][]network.InterfaceStats{}},
	}
	newRuntime := func(name, typ, netMode string) *fakeRuntime {
		return &fakeRuntime{f: f, files: files, conmon: conmon, ctrs: map[string]*fakeCtr{}, creates: map[string]int{}, exitOnStart: -1,
			h: oci.Handler{Name: name, Type: typ, Path: self, Root: filepath.Join(dir, name), Network: netMode}}
	}
	n.runc = newRuntime("runc", oci.TypeRunc, "")
	n.runsc = newRuntime("runsc", oci.TypeRunsc, oci.NetworkHost)
	t.Cleanup(func() {
		n.runc.stopMonitors()
		n.runsc.stopMonitors()
	})
	n.srv = NewServer(Deps{
		Store: store, Images: n.images, Network: n.net, Pods: n.pods,
		Handlers: map[string]Handler{
			"runc":  {Runtime: n.runc, Class: string(trust.Trusted)},
			"runsc": {Runtime: n.runsc, Class: string(trust.Untrusted)},
		},
		Trust: trust.Config{Handlers: map[string]trust.Class{"runc": trust.Trusted, "runsc": trust.Untrusted},
			TrustedHandler: "runc", UntrustedHandler: "runsc", DefaultTrust: trust.Trusted},
		Files: files, Log: slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		CrispdPath: "/usr/local/bin/crispd",
		Cgroups:    n.cg, Layers: n.layers, NetStats: n.netst, LayerRoot: graph,
	})
	return n
}

// podOpt changes a test pod's config.
type podOpt func(*runtimeapi.PodSandboxConfig)

func withPIDPod(c *runtimeapi.PodSandboxConfig) { nsOpts(c).Pid = runtimeapi.NamespaceMode_POD }

func withHostNetwork(c *runtimeapi.PodSandboxConfig) {
	nsOpts(c).Network = runtimeapi.NamespaceMode_NODE
}

func withHostIPC(c *runtimeapi.PodSandboxConfig) { nsOpts(c).Ipc = runtimeapi.NamespaceMode_NODE }

func withHostPID(c *runtimeapi.PodSandboxConfig) { nsOpts(c).Pid = runtimeapi.NamespaceMode_NODE }

func withHostname(h string) podOpt { return func(c *runtimeapi.PodSandboxConfig) { c.Hostname = h } }

// withSysctls sets an IPC sysctl, and a network one if the pod has a
// network of its own. Put it after withHostNetwork.
func withSysctls(c *runtimeapi.PodSandboxConfig) {
	c.Linux.Sysctls = map[string]string{"kernel.shm_rmid_forced": "1"}
	if nsOpts(c).Network != runtimeapi.NamespaceMode_NODE {
		c.Linux.Sysctls["net.ipv4.ip_unprivileged_port_start"] = "0"
	}
}

func nsOpts(c *runtimeapi.PodSandboxConfig) *runtimeapi.NamespaceOption {
	if c.Linux.SecurityContext == nil {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{}
	}
	if c.Linux.SecurityContext.NamespaceOptions == nil {
		c.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{}
	}
	return c.Linux.SecurityContext.NamespaceOptions
}

// podConfig is the config of a pod called name, changed by opts.
func (n *testNode) podConfig(name string, opts ...podOpt) *runtimeapi.PodSandboxConfig {
	c := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: "uid-" + name},
		Hostname:     name,
		LogDirectory: filepath.Join(n.logDir, name),
		Labels:       map[string]string{"app": name},
		PortMappings: []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: 8080}, {ContainerPort: 53, Protocol: runtimeapi.Protocol_UDP}},
		// As kubelet sends them: the pod's containers do not share a PID
		// namespace unless the pod says so.
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// runPod runs a pod that must come up, on handler ("" for the default).
func (n *testNode) runPod(t *testing.T, cfg *runtimeapi.PodSandboxConfig, handler string) string {
	t.Helper()
	resp, err := n.srv.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	if err != nil {
		t.Fatalf("RunPodSandbox(%s) = %v", cfg.Metadata.Name, err)
	}
	return resp.PodSandboxId
}

// ctrConfig is the config of a container called name.
// setFeatures sets what handler name's runtime says it can do.
func (n *testNode) setFeatures(name string, f oci.Features) {
	h := n.srv.handlers[name]
	h.Features = f
	n.srv.handlers[name] = h
}

func ctrConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: testImage.RepoTags[0]},
		Command:  []string{"sleep", "1000"},
		LogPath:  name + "/0.log",
		Labels:   map[string]string{"ctr": name},
	}
}

func createReq(podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) *runtimeapi.CreateContainerRequest {
	return &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg}
}

// createCtr creates a container that must be created.
func (n *testNode) createCtr(t *testing.T, podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	resp, err := n.srv.CreateContainer(context.Background(), createReq(podID, podCfg, cfg))
	if err != nil {
		t.Fatalf("CreateContainer(%s) = %v", cfg.Metadata.Name, err)
	}
	return resp.ContainerId
}

// startCtr creates and starts a container that must run.
func (n *testNode) startCtr(t *testing.T, podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	id := n.createCtr(t, podID, podCfg, cfg)
	if _, err := n.srv.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer(%s) = %v", cfg.Metadata.Name, err)
	}
	return id
}

// ctrRow is what the database says of container id.
func (n *testNode) ctrRow(t *testing.T, id string) db.Container {
	t.Helper()
	c, err := n.store.Container(context.Background(), id)
	if err != nil {
		t.Fatalf("container %s: %v", id, err)
	}
	return c
}

func (n *testNode) podRow(t *testing.T, id string) db.Sandbox {
	t.Helper()
	sb, err := n.store.Sandbox(context.Background(), id)
	if err != nil {
		t.Fatalf("sandbox %s: %v", id, err)
	}
	return sb
}

// nodeState is everything a test node has: in each fake, in the database
// and on disk. Two states compare equal when nothing was made or left.
type nodeState struct {
	NetNS     []string // attached pods and their netns
	Rootfs    []string // container root filesystems
	Runtime   []string // runtime containers, with their status
	Pods      []string // pod dirs, with their infra processes
	Sandboxes []string // rows, with their state
	Ctrs      []string
	Names     []string // reserved names
	Files     []string // every path under the run dir and the storage root
}

func (n *testNode) state(t *testing.T) nodeState {
	t.Helper()
	ctx := context.Background()
	var s nodeState
	n.f.mu.Lock()
	for id, a := range n.net.attached {
		s.NetNS = append(s.NetNS, "attached "+id+" "+a.NetNS)
	}
	for id := range n.images.rootfs {
		s.Rootfs = append(s.Rootfs, id)
	}
	for id, o := range n.pods.pods {
		s.Pods = append(s.Pods, fmt.Sprintf("pod %s %s", id, o.Hostname))
	}
	for id := range n.pods.infra {
		s.Pods = append(s.Pods, "infra "+id)
	}
	n.f.mu.Unlock()
	s.Runtime = append(n.runc.ids(), n.runsc.ids()...)
	sbs, err := n.store.ListSandboxes(ctx, db.SandboxFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range sbs {
		s.Sandboxes = append(s.Sandboxes, sb.ID+" "+string(sb.State))
	}
	cs, err := n.store.ListContainers(ctx, db.ContainerFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		s.Ctrs = append(s.Ctrs, c.ID+" "+string(c.State))
	}
	names, err := n.store.Names(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, nm := range names {
		s.Names = append(s.Names, fmt.Sprintf("%s %s %s", nm.Kind, nm.Name, nm.OwnerID))
	}
	for _, root := range []string{n.files.RunDir(), n.images.root} {
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil {
				s.Files = append(s.Files, path)
			}
			return nil
		})
	}
	v := reflect.ValueOf(&s).Elem()
	for i := range v.NumField() {
		slices.Sort(v.Field(i).Interface().([]string))
	}
	return s
}

// diff describes how b differs from a, "" if it does not.
func (a nodeState) diff(b nodeState) string {
	var out []string
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		x, y := va.Field(i).Interface().([]string), vb.Field(i).Interface().([]string)
		for _, e := range y {
			if !slices.Contains(x, e) {
				out = append(out, fmt.Sprintf("%s: +%s", va.Type().Field(i).Name, e))
			}
		}
		for _, e := range x {
			if !slices.Contains(y, e) {
				out = append(out, fmt.Sprintf("%s: -%s", va.Type().Field(i).Name, e))
			}
		}
	}
	return strings.Join(out, "\n")
}

// assertState fails t if the node's state is not want.
func (n *testNode) assertState(t *testing.T, want nodeState, when string) {
	t.Helper()
	if d := want.diff(n.state(t)); d != "" {
		t.Errorf("%s, the node changed:\n%s", when, d)
	}
}

// codeOfErr is the gRPC code kubelet would see for err.
func codeOfErr(err error) codes.Code { return status.Code(toStatus(err)) }
