package cri

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crisp-cri/crisp/runtimes/layout"
	"github.com/crisp-cri/crisp/runtimes/network"
	"github.com/crisp-cri/crisp/runtimes/oci"
	"github.com/crisp-cri/crisp/runtimes/pod"
	"github.com/crisp-cri/crisp/runtimes/storage"
)

// The fakes below stand for the node: they record what exists (network
// namespaces, attachments, root filesystems, runtime containers, pod dirs,
// infra processes) and fail at the step a test names. They make real files
// where crisp reads real files (a pin under the netns dir, a pod dir, a
// bundle's pid files, an exit file), so that cri's own file handling runs
// as it does on a node; nothing needs root.

// errInjected is what a fake returns at a step a test armed.
var errInjected = errors.New("injected failure")

// faults is shared by the fakes of one test node: it names steps
// ("net.setup"), fails the ones a test armed, runs the hooks a test set
// around them, and keeps the order of the calls. Its lock guards every
// fake's state too, so a step's work runs under it; hooks run outside it,
// so a hook may block.
type faults struct {
	mu     sync.Mutex
	fail   map[string]error
	before map[string]func()
	after  map[string]func()
	calls  []string
}

func newFaults() *faults {
	return &faults{fail: map[string]error{}, before: map[string]func(){}, after: map[string]func(){}}
}

// failAt makes step fail with err from now on; a nil err stops it.
func (f *faults) failAt(step string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fail, step)
		return
	}
	f.fail[step] = err
}

// beforeStep runs fn each time step is called, before its work.
func (f *faults) beforeStep(step string, fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.before[step] = fn
}

// afterStep runs fn each time step has succeeded.
func (f *faults) afterStep(step string, fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.after[step] = fn
}

// do runs step: its before hook, then, unless it is armed to fail, its
// work under the lock, then its after hook if it worked.
func (f *faults) do(step string, work func() error) error {
	f.mu.Lock()
	before := f.before[step]
	f.mu.Unlock()
	if before != nil {
		before()
	}
	f.mu.Lock()
	f.calls = append(f.calls, step)
	err := f.fail[step]
	if err != nil {
		err = fmt.Errorf("%s: %w", step, err)
	} else {
		err = work()
	}
	after := f.after[step]
	f.mu.Unlock()
	if err == nil && after != nil {
		after()
	}
	return err
}

// count is how many times step was called.
func (f *faults) count(step string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == step {
			n++
		}
	}
	return n
}

// fakeImages stands for *storage.Store: images by reference, and container
// root filesystems as directories under root.
type fakeImages struct {
	f       *faults
	root    string
	images  []storage.Image
	rootfs  map[string]storage.Rootfs // by container id
	imageOf map[string]string         // image id, by container id
}

var _ Images = (*fakeImages)(nil)

// testImage is the image every test node has.
var testImage = storage.Image{
	ID:       strings.Repeat("ab", 32),
	RepoTags: []string{"docker.io/library/busybox:latest"},
	Size:     4 << 20,
	Config: &imgspecv1.Image{Config: imgspecv1.ImageConfig{
		Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}, StopSignal: "SIGQUIT",
	}},
}

func (m *fakeImages) find(ref string) (storage.Image, bool) {
	for _, img := range m.images {
		if ref == img.ID || ref == "sha256:"+img.ID || slices.Contains(img.RepoTags, ref) {
			return img, true
		}
	}
	return storage.Image{}, false
}

func (m *fakeImages) Pull(_ context.Context, ref string, _ *storage.Auth) (img storage.Image, err error) {
	err = m.f.do("images.pull", func() error {
		var ok bool
		if img, ok = m.find(ref); !ok {
			return fmt.Errorf("pull %s: %w", ref, storage.ErrImageNotFound)
		}
		return nil
	})
	return img, err
}

func (m *fakeImages) Status(_ context.Context, ref string) (img storage.Image, err error) {
	err = m.f.do("images.status", func() error {
		var ok bool
		if img, ok = m.find(ref); !ok {
			return fmt.Errorf("image %s: %w", ref, storage.ErrImageNotFound)
		}
		return nil
	})
	return img, err
}

func (m *fakeImages) List(context.Context) (imgs []storage.Image, err error) {
	err = m.f.do("images.list", func() error {
		imgs = slices.Clone(m.images)
		return nil
	})
	return imgs, err
}

func (m *fakeImages) Remove(_ context.Context, ref string) error {
	return m.f.do("images.remove", func() error {
		img, ok := m.find(ref)
		if !ok {
			return nil
		}
		for ctr, used := range m.imageOf {
			if used == img.ID {
				return fmt.Errorf("image %s: used by container %s: %w", ref, ctr, storage.ErrImageInUse)
			}
		}
		m.images = slices.DeleteFunc(m.images, func(i storage.Image) bool { return i.ID == img.ID })
		return nil
	})
}

func (m *fakeImages) Usage(context.Context) (u storage.FsUsage, err error) {
	err = m.f.do("images.usage", func() error {
		u = storage.FsUsage{Mountpoint: m.root, Bytes: 1 << 20, Inodes: 42, At: time.Unix(1700000000, 0)}
		return nil
	})
	return u, err
}

func (m *fakeImages) CreateContainer(id, imageID string, _ storage.Metadata) (r storage.Rootfs, err error) {
	err = m.f.do("images.create-container", func() error {
		img, ok := m.find(imageID)
		if !ok {
			return fmt.Errorf("create storage for container %s: image %s: %w", id, imageID, storage.ErrImageNotFound)
		}
		if _, ok := m.rootfs[id]; ok {
			return fmt.Errorf("create storage for container %s: already exists", id)
		}
		r = storage.Rootfs{ID: id, Mount: filepath.Join(m.root, id, "merged"), Dir: filepath.Join(m.root, id, "userdata")}
		for _, d := range []string{r.Mount, r.Dir, filepath.Join(r.Mount, "etc")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		// The image's tree: etc, and a symlink that would lead out of it.
		if err := os.Symlink("../../../../../..", filepath.Join(r.Mount, "up")); err != nil {
			return err
		}
		m.rootfs[id] = r
		m.imageOf[id] = img.ID
		return nil
	})
	return r, err
}

func (m *fakeImages) RemoveContainer(id string) error {
	return m.f.do("images.remove-container", func() error {
		delete(m.rootfs, id)
		delete(m.imageOf, id)
		return os.RemoveAll(filepath.Join(m.root, id))
	})
}

// fakeNetwork stands for *network.Manager: a pin is an empty file in the
// layout's netns dir, an attachment a record with an address.
type fakeNetwork struct {
	f        *faults
	dir      string
	attached map[string]network.Attachment // by pod id
	ips      map[string]string             // by pod id
	next     int
	status   error
	cidrs    []netip.Prefix // from SetPodCIDRs
}

var _ Network = (*fakeNetwork)(nil)

func (n *fakeNetwork) NewNetNS(id string) (path string, err error) {
	err = n.f.do("net.new-netns", func() error {
		path = filepath.Join(n.dir, id)
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o444)
		if err != nil {
			return fmt.Errorf("pin netns of %s: %w", id, err)
		}
		return f.Close()
	})
	return path, err
}

func (n *fakeNetwork) RemoveNetNS(path string) error {
	return n.f.do("net.remove-netns", func() error {
		if filepath.Dir(path) != n.dir {
			return fmt.Errorf("remove netns %s: not a pin in %s", path, n.dir)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	})
}

func (n *fakeNetwork) Setup(ctx context.Context, a network.Attachment) (ips []string, err error) {
	err = n.f.do("net.setup", func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, ok := n.attached[a.PodID]; ok {
			return fmt.Errorf("pod %s: %w", a.PodID, network.ErrAlreadyAttached)
		}
		if _, err := os.Stat(a.NetNS); err != nil {
			return fmt.Errorf("attach pod %s: netns: %w", a.PodID, err)
		}
		n.next++
		n.attached[a.PodID] = a
		n.ips[a.PodID] = fmt.Sprintf("10.88.0.%d", n.next)
		ips = []string{n.ips[a.PodID]}
		return nil
	})
	return ips, err
}

func (n *fakeNetwork) Teardown(_ context.Context, a network.Attachment) error {
	return n.f.do("net.teardown", func() error {
		delete(n.attached, a.PodID)
		delete(n.ips, a.PodID)
		return nil
	})
}

func (n *fakeNetwork) Status() error {
	return n.f.do("net.status", func() error { return n.status })
}

func (n *fakeNetwork) SetPodCIDRs(cidrs []netip.Prefix) error {
	return n.f.do("net.set-pod-cidrs", func() error {
		n.cidrs = cidrs
		return nil
	})
}

// fakePods stands for package pod: a pod dir under root with the files its
// containers mount, plain files for the pinned namespaces and /dev/shm, and
// infra processes as records.
type fakePods struct {
	f       *faults
	root    string
	pods    map[string]pod.Options // by id
	infra   map[string]pod.Infra   // by pod id
	exited  map[string]bool        // infra processes that died
	sysctls []map[string]string    // every SetSysctls, in order
}

var _ Pods = (*fakePods)(nil)

func (p *fakePods) Dir(id string) string { return pod.Dir(p.root, id) }

func (p *fakePods) Create(o pod.Options) (out pod.Pod, err error) {
	err = p.f.do("pods.create", func() error {
		if _, ok := p.pods[o.ID]; ok {
			return fmt.Errorf("pod %s exists", o.ID)
		}
		dir := p.Dir(o.ID)
		files := []string{"resolv.conf", "hostname", "hosts"}
		if !o.HostIPC {
			files = append(files, "shm", "ipcns")
		}
		if !o.HostUTS {
			files = append(files, "utsns")
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
				return err
			}
		}
		p.pods[o.ID] = o
		out = pod.Lookup(p.root, o.ID)
		return nil
	})
	return out, err
}

func (p *fakePods) Remove(id string) error {
	return p.f.do("pods.remove", func() error {
		if _, ok := p.infra[id]; ok {
			return fmt.Errorf("pod %s: infra process still runs", id)
		}
		delete(p.pods, id)
		return os.RemoveAll(p.Dir(id))
	})
}

func (p *fakePods) Lookup(id string) pod.Pod { return pod.Lookup(p.root, id) }

func (p *fakePods) SetSysctls(netns, ipcns string, sysctls map[string]string) error {
	return p.f.do("pods.sysctls", func() error {
		p.sysctls = append(p.sysctls, sysctls)
		return nil
	})
}

func (p *fakePods) StartInfra(id string, o pod.InfraOptions) (inf pod.Infra, err error) {
	err = p.f.do("pods.start-infra", func() error {
		if _, ok := p.pods[id]; !ok {
			return fmt.Errorf("infra of pod %s: no pod dir", id)
		}
		if o.NSEnter == "" || o.Exe == "" {
			return fmt.Errorf("infra of pod %s: no nsenter or crispd", id)
		}
		inf = pod.Infra{PID: fakePID(), Start: 1, Cgroup: o.Cgroup}
		p.infra[id] = inf
		return nil
	})
	return inf, err
}

func (p *fakePods) StopInfra(_ context.Context, id string) error {
	return p.f.do("pods.stop-infra", func() error {
		delete(p.infra, id)
		delete(p.exited, id)
		return nil
	})
}

func (p *fakePods) LookupInfra(id string) (inf pod.Infra, err error) {
	err = p.f.do("pods.lookup-infra", func() error {
		var ok bool
		switch inf, ok = p.infra[id]; {
		case !ok:
			return fmt.Errorf("pod %s: %w", id, pod.ErrNoInfra)
		case p.exited[id]:
			return fmt.Errorf("pod %s: %w", id, pod.ErrInfraExited)
		}
		return nil
	})
	return inf, err
}

// fakePID hands out pids above the largest pid_max (2^22), which no
// process can have: nothing a test does signals a real process by them.
var fakePID = func() func() int {
	var mu sync.Mutex
	next := 1 << 22
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		next++
		return next
	}
}()

// fakeRuntime stands for *oci.Runtime. Each container it creates gets a
// fake monitor: a process whose name is conmon (see TestMain), whose pid
// is in the bundle where conmon leaves its own, so that oci.MonitorAlive
// and oci.KillMonitor work on it as on a real one. When a container ends,
// its monitor writes the exit file and exits, as conmon does.
type fakeRuntime struct {
	f       *faults
	h       oci.Handler
	files   layout.Layout
	conmon  string // the fake monitor's executable, named conmon
	ctrs    map[string]*fakeCtr
	creates map[string]int // Create calls that worked, by id
	// exitOnStart makes containers exit with this code as they start
	// (-1: they keep running).
	exitOnStart int
}

type fakeCtr struct {
	status  string // created, running or stopped
	pid     int
	monitor *fakeMonitor
	opts    oci.CreateOpts
}

// fakeMonitor is a container's fake monitor process.
type fakeMonitor struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser // kept: the process exits when it closes
	done  chan struct{}  // closed once the process has exited and is reaped
}

func startMonitor(conmon string) (*fakeMonitor, error) {
	m := &fakeMonitor{cmd: exec.Command(conmon), done: make(chan struct{})}
	m.cmd.Env = append(os.Environ(), fakeConmonEnv+"=1")
	var err error
	if m.stdin, err = m.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start fake monitor: %w", err)
	}
	go func() {
		m.cmd.Wait()
		close(m.done)
	}()
	return m, nil
}

// alive reports whether the monitor still runs (nobody killed it).
func (m *fakeMonitor) alive() bool {
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// stop kills the monitor and waits until it is gone.
func (m *fakeMonitor) stop() {
	m.cmd.Process.Kill()
	<-m.done
	m.stdin.Close()
}

var _ Runtime = (*fakeRuntime)(nil)

func (r *fakeRuntime) Handler() oci.Handler { return r.h }
func (r *fakeRuntime) Netstack() bool {
	return r.h.Type == oci.TypeRunsc && r.h.Network == oci.NetworkSandbox
}
func (r *fakeRuntime) GlobalArgs() []string { return []string{"--root", r.h.Root} }

func (r *fakeRuntime) ExecTTYArgs() []string { return []string{"--tty"} }

func (r *fakeRuntime) Create(ctx context.Context, c oci.CreateOpts) (pid int, err error) {
	err = r.f.do("rt.create", func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, ok := r.ctrs[c.ID]; ok {
			return fmt.Errorf("create %s: container exists", c.ID)
		}
		files := r.files.Container(c.ID)
		if _, err := os.Stat(files.Spec()); err != nil {
			return fmt.Errorf("create %s: no spec in the bundle: %w", c.ID, err)
		}
		if c.LogPath == "" {
			return fmt.Errorf("create %s: no log path", c.ID)
		}
		mon, err := startMonitor(r.conmon)
		if err != nil {
			return err
		}
		ctr := &fakeCtr{status: "created", pid: fakePID(), monitor: mon, opts: c}
		for path, n := range map[string]int{files.InitPidFile(): ctr.pid, files.ConmonPidFile(): mon.cmd.Process.Pid} {
			if err := os.WriteFile(path, []byte(fmt.Sprint(n)), 0o644); err != nil {
				mon.stop()
				return err
			}
		}
		r.ctrs[c.ID] = ctr
		r.creates[c.ID]++
		pid = ctr.pid
		return nil
	})
	return pid, err
}

// exit ends container id with code: its monitor, if it still runs,
// records the exit and exits.
func (r *fakeRuntime) exit(id string, code int) error {
	ctr := r.ctrs[id]
	ctr.status = "stopped"
	if !ctr.monitor.alive() {
		return nil
	}
	files := r.files.Container(id)
	if err := os.WriteFile(files.ExitFile, []byte(fmt.Sprint(code)), 0o644); err != nil {
		return err
	}
	ctr.monitor.stop()
	return nil
}

// killMonitor kills container id's monitor, as a crash of crispd while
// the monitor was being set up does.
func (r *fakeRuntime) killMonitor(id string) {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	if ctr := r.ctrs[id]; ctr != nil {
		ctr.monitor.stop()
	}
}

func (r *fakeRuntime) lookup(id string) (*fakeCtr, error) {
	ctr, ok := r.ctrs[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, oci.ErrNotFound)
	}
	return ctr, nil
}

func (r *fakeRuntime) Start(ctx context.Context, id string) error {
	return r.f.do("rt.start", func() error {
		ctr, err := r.lookup(id)
		if err != nil {
			return err
		}
		if ctr.status != "created" {
			return fmt.Errorf("start %s: it is %s", id, ctr.status)
		}
		ctr.status = "running"
		if r.exitOnStart >= 0 {
			return r.exit(id, r.exitOnStart)
		}
		return nil
	})
}

func (r *fakeRuntime) Kill(_ context.Context, id string, sig syscall.Signal, _ bool) error {
	return r.f.do("rt.kill", func() error {
		ctr, err := r.lookup(id)
		if err != nil {
			return err
		}
		if ctr.status == "stopped" {
			return fmt.Errorf("kill %s: %w", id, oci.ErrNotRunning)
		}
		return r.exit(id, 128+int(sig))
	})
}

func (r *fakeRuntime) Delete(_ context.Context, id string, force bool) error {
	return r.f.do("rt.delete", func() error {
		ctr, err := r.lookup(id)
		if err != nil {
			return err
		}
		if ctr.status == "running" && !force {
			return fmt.Errorf("delete %s: it is running", id)
		}
		if ctr.status != "stopped" {
			if err := r.exit(id, 137); err != nil {
				return err
			}
		}
		delete(r.ctrs, id)
		return nil
	})
}

func (r *fakeRuntime) State(_ context.Context, id string) (st oci.State, err error) {
	err = r.f.do("rt.state", func() error {
		ctr, err := r.lookup(id)
		if err != nil {
			return err
		}
		st = oci.State{ID: id, Status: ctr.status, PID: ctr.pid, Bundle: r.files.Container(id).Bundle}
		if ctr.status == "stopped" {
			st.PID = 0
		}
		return nil
	})
	return st, err
}

func (r *fakeRuntime) ExecSync(_ context.Context, id string, p specs.Process, _ time.Duration) (stdout, stderr []byte, code int, err error) {
	err = r.f.do("rt.exec", func() error {
		ctr, err := r.lookup(id)
		if err != nil {
			return err
		}
		if ctr.status != "running" {
			return fmt.Errorf("exec in %s: %w", id, oci.ErrNotRunning)
		}
		stdout, stderr, code = []byte(strings.Join(p.Args, " ")), []byte(p.Cwd), 3
		return nil
	})
	return stdout, stderr, code, err
}

func (r *fakeRuntime) Update(_ context.Context, id string, res *specs.LinuxResources) error {
	return r.f.do("rt.update", func() error {
		if r.h.Type == oci.TypeRunsc {
			return fmt.Errorf("update %s: %w", id, oci.ErrUnsupported)
		}
		_, err := r.lookup(id)
		return err
	})
}

func (r *fakeRuntime) Stats(_ context.Context, id string) (st *oci.Stats, err error) {
	err = r.f.do("rt.stats", func() error {
		ctr, err := r.lookup(id)
		if err != nil {
			return err
		}
		if ctr.status != "running" {
			return fmt.Errorf("stats of %s: %w", id, oci.ErrNotRunning)
		}
		st = &oci.Stats{Timestamp: time.Unix(1700000000, 0), CPUUsageNanos: 1000, MemoryUsageBytes: 2048, MemoryWorkingSetBytes: 1024}
		return nil
	})
	return st, err
}

// ids lists the runtime's containers.
func (r *fakeRuntime) ids() []string {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	var out []string
	for id, c := range r.ctrs {
		out = append(out, id+" "+c.status)
	}
	slices.Sort(out)
	return out
}

// stopMonitors kills what is left of the fake monitors.
func (r *fakeRuntime) stopMonitors() {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	for _, c := range r.ctrs {
		c.monitor.stop()
	}
}

// fakeConmonEnv makes the test binary a fake monitor (see TestMain).
const fakeConmonEnv = "CRISP_TEST_FAKE_CONMON"

// TestMain lets the test binary be a fake monitor: run under the name
// conmon with fakeConmonEnv set, it waits until its stdin closes, which is
// when the test process that started it ends, if nothing killed it first.
func TestMain(m *testing.M) {
	if os.Getenv(fakeConmonEnv) != "" {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeConmon returns an executable named conmon that runs the test binary:
// the kernel names a process after the file it was exec'd by.
func fakeConmon(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "conmon")
	if err := os.Symlink(self, path); err != nil {
		t.Fatal(err)
	}
	return path
}
