// Package harness starts the real crispd binary on a private temp dir and
// talks to it the way kubelet, crictl and operators do: CRI over the unix
// socket, crispctl as a subprocess. Nothing in crisp imports it.
package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RequireRoot skips a test that needs root, loudly; under CI (which runs as
// root with every tool installed) it fails instead, so a skip can never
// pass for a green run.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("this end-to-end test needs root, and CI must run it: run as root")
	}
	t.Skip("SKIPPED: end-to-end test needs root (run `make test` as root)")
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Bins returns the directory holding crispd and crispctl: $CRISP_BIN_DIR
// (set by `make test`), or a fresh build of the working tree.
func Bins(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if d := os.Getenv("CRISP_BIN_DIR"); d != "" {
			binDir = d
			return
		}
		binDir, buildErr = os.MkdirTemp("", "crisp-bin-")
		if buildErr != nil {
			return
		}
		root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
		if err != nil {
			buildErr = fmt.Errorf("find module root: %w", err)
			return
		}
		for _, cmd := range []string{"crispd", "crispctl"} {
			c := exec.Command("go", "build", "-tags", "containers_image_openpgp,exclude_graphdriver_btrfs",
				"-o", filepath.Join(binDir, cmd), "./cmd/"+cmd)
			c.Dir = strings.TrimSpace(string(root))
			c.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := c.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", cmd, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// Daemon is one running crispd.
type Daemon struct {
	t        testing.TB
	Dir      string // the temp dir holding everything
	RunDir   string
	StateDir string
	Config   string // the config file it was started with
	Log      *SyncBuffer
	Env      []string // extra environment of crispd, e.g. CONTAINERS_REGISTRIES_CONF
	network  string   // the config's [network] section; empty: the test network
	wrap     []string // command line crispd runs under (WithPrivateCgroup2); nil: none
	cmd      *exec.Cmd
	done     chan error
	mu       sync.Mutex
}

// Option changes a daemon before it starts.
type Option func(d *Daemon, cfg *strings.Builder)

// WithTOML appends raw TOML to the daemon's config file.
func WithTOML(s string) Option {
	return func(_ *Daemon, cfg *strings.Builder) { cfg.WriteString(s + "\n") }
}

// WithNetwork replaces the test network with toml, the whole [network]
// section (and its sub-tables). It must reach nowhere either: no
// masquerade, no default route, subnets covered by EnsureUnreachable.
func WithNetwork(toml string) Option {
	return func(d *Daemon, _ *strings.Builder) { d.network = toml }
}

// WithEnv adds KEY=VALUE to crispd's environment.
func WithEnv(kv string) Option {
	return func(d *Daemon, _ *strings.Builder) { d.Env = append(d.Env, kv) }
}

// Start starts crispd on a fresh temp dir and waits until its CRI socket
// answers. The daemon is stopped (SIGTERM) at the end of the test.
func Start(t testing.TB, opts ...Option) *Daemon {
	t.Helper()
	dir := t.TempDir()
	// The run dir is short, as /run/crisp is: conmon's attach sockets live
	// in it and a unix socket path has 107 bytes at most.
	runDir, err := os.MkdirTemp("/run", "crisp-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// gVisor pins an empty network namespace for its gofers in its
		// root and expects it unmounted before the root is removed
		// (several runsc processes may have stacked a mount each).
		for unix.Unmount(filepath.Join(runDir, "runsc", "null-netns"), unix.MNT_DETACH) == nil {
		}
		os.RemoveAll(runDir)
	})
	d := &Daemon{t: t, Dir: dir, RunDir: runDir, StateDir: filepath.Join(dir, "state"),
		Config: filepath.Join(dir, "crisp.toml")}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "run_dir = %q\nstate_dir = %q\nlog_level = \"debug\"\nlog_format = \"json\"\n", d.RunDir, d.StateDir)
	for _, o := range opts {
		o(d, &cfg)
	}
	// Never the built-in bridge as shipped: tests use a network that
	// reaches nowhere (WithNetwork may give another, as safe).
	if d.network == "" {
		d.network = testNetworkTOML(t, dir)
	}
	fmt.Fprintf(&cfg, "\n%s\n", d.network)
	if err := os.WriteFile(d.Config, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	d.start()
	t.Cleanup(func() {
		d.removeAllPods()
		d.Stop()
		if t.Failed() {
			t.Logf("crispd log:\n%s", d.Log.String())
		}
	})
	return d
}

func (d *Daemon) start() {
	d.t.Helper()
	d.Log = &SyncBuffer{}
	args := append(append([]string{}, d.wrap...), filepath.Join(Bins(d.t), "crispd"), "--config", d.Config)
	d.cmd = exec.Command(args[0], args[1:]...)
	d.cmd.Env = append(os.Environ(), d.Env...)
	d.cmd.Stdout = d.Log
	d.cmd.Stderr = d.Log
	if err := d.cmd.Start(); err != nil {
		d.t.Fatalf("start crispd: %v", err)
	}
	d.done = make(chan error, 1)
	go func() { d.done <- d.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := d.Runtime().Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return
		}
		select {
		case err := <-d.done:
			d.t.Fatalf("crispd exited during start: %v\n%s", err, d.Log.String())
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("crispd did not answer on %s within 30s: %v\n%s", d.Socket(), err, d.Log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removeAllPods stops and removes every pod through the CRI, so that a
// failed test leaves no container, mount or network behind.
func (d *Daemon) removeAllPods() {
	d.mu.Lock()
	running := d.cmd != nil
	d.mu.Unlock()
	if !running {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt := d.Runtime()
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		d.t.Logf("cleanup: list pods: %v", err)
		return
	}
	for _, p := range pods.Items {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			d.t.Logf("cleanup: stop pod %s: %v", p.Id, err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			d.t.Logf("cleanup: remove pod %s: %v", p.Id, err)
		}
	}
}

// Socket is the CRI socket path.
func (d *Daemon) Socket() string { return filepath.Join(d.RunDir, "crisp.sock") }

// AdminSocket is the admin socket path.
func (d *Daemon) AdminSocket() string { return filepath.Join(d.RunDir, "admin.sock") }

// Database is the state database path.
func (d *Daemon) Database() string { return filepath.Join(d.StateDir, "state.db") }

// Runtime returns a CRI RuntimeService client over the unix socket.
func (d *Daemon) Runtime() runtimeapi.RuntimeServiceClient {
	return runtimeapi.NewRuntimeServiceClient(d.conn())
}

// Images returns a CRI ImageService client over the unix socket.
func (d *Daemon) Images() runtimeapi.ImageServiceClient {
	return runtimeapi.NewImageServiceClient(d.conn())
}

func (d *Daemon) conn() *grpc.ClientConn {
	d.t.Helper()
	// As kubelet dials: 16 MiB messages both ways.
	conn, err := grpc.NewClient("unix://"+d.Socket(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)))
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { conn.Close() })
	return conn
}

// Crispctl runs crispctl against this daemon and returns its stdout, its
// stderr and its error.
func (d *Daemon) Crispctl(args ...string) (stdout, stderr string, err error) {
	d.t.Helper()
	cmd := exec.Command(filepath.Join(Bins(d.t), "crispctl"), append([]string{"--config", d.Config}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// Crictl runs crictl (from the bin dir, else PATH) against this daemon's
// socket and returns its stdout, stderr and error.
func (d *Daemon) Crictl(args ...string) (stdout, stderr string, err error) {
	d.t.Helper()
	return d.CrictlWithInput("", args...)
}

// CrictlWithInput runs crictl as Crictl does, with input on its stdin
// (attach -i sends it to the container).
func (d *Daemon) CrictlWithInput(input string, args ...string) (stdout, stderr string, err error) {
	d.t.Helper()
	crictl := filepath.Join(Bins(d.t), "crictl")
	if _, err := os.Stat(crictl); err != nil {
		crictl = RequireTool(d.t, "crictl")
	}
	ep := "unix://" + d.Socket()
	cmd := exec.Command(crictl, append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "60s"}, args...)...)
	if input != "" {
		cmd.Stdin = strings.NewReader(input)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// CrictlInTerminal runs crictl as Crictl does, on a terminal of its own
// (util-linux script(1) gives it one), for what crictl refuses without:
// exec -it and attach -it. Its output has the terminal's CRLF line ends.
func (d *Daemon) CrictlInTerminal(args ...string) (string, error) {
	d.t.Helper()
	crictl := filepath.Join(Bins(d.t), "crictl")
	if _, err := os.Stat(crictl); err != nil {
		crictl = RequireTool(d.t, "crictl")
	}
	ep := "unix://" + d.Socket()
	line := ""
	for _, w := range append([]string{crictl, "--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "60s"}, args...) {
		line += " '" + strings.ReplaceAll(w, "'", `'\''`) + "'" // quoted for script's sh -c
	}
	cmd := exec.Command("script", "--quiet", "--return", "--command", line, "/dev/null")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// PID is the running crispd's process id.
func (d *Daemon) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd.Process.Pid
}

// Stop sends SIGTERM and waits for crispd to exit; it is a no-op once
// stopped.
func (d *Daemon) Stop() error { return d.signal(syscall.SIGTERM) }

// Kill sends SIGKILL and waits: a crash at an arbitrary moment.
func (d *Daemon) Kill() error { return d.signal(syscall.SIGKILL) }

func (d *Daemon) signal(sig syscall.Signal) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return nil
	}
	d.cmd.Process.Signal(sig)
	var err error
	select {
	case err = <-d.done:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		err = fmt.Errorf("crispd did not exit within 30s of %v", sig)
		<-d.done
	}
	d.cmd = nil
	if sig == syscall.SIGKILL {
		return nil
	}
	return err
}

// Restart starts crispd again on the same dirs after Stop or Kill.
func (d *Daemon) Restart() {
	d.t.Helper()
	d.start()
}

// SyncBuffer is a bytes.Buffer safe for the writer goroutines of exec and
// a reading test.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// RequireTool skips a test whose tool is not installed, loudly; under CI
// (where `make deps` installs every tool) it fails instead.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed, and CI must run this test: `make deps` installs it", name)
	}
	t.Skipf("SKIPPED: %s is not installed (`make deps` installs it)", name)
	return ""
}
