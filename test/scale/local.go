package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/images"
)

// The private crispd's pod network, the same shape as the end-to-end tests'
// (test/harness/network.go) and the containerd peer's: a bridge of its own
// holding the subnet's first address, host-local addresses, no routes in
// pods (so no default route), no masquerade, and an unreachable route for
// the subnet behind the bridge's own, so that a packet for a pod address
// can never leave the host. The subnet is outside the end-to-end tests'
// 10.213.x.0/24 networks, and a /20 holds the 120 pods of a default run
// many times over.
const (
	localBridge    = "crispscale0"
	localBridgeMAC = "02:63:72:73:63:30" // locally administered
	localSubnet    = "10.214.0.0/20"
	// unreachableMetric puts the safety route behind the bridge's route
	// (metric 0), as the harness does.
	unreachableMetric = "4242"
	localLock         = "/run/crisp-scale.lock"
	localImage        = "scale/busybox:1.0"
)

// localEnv is a crispd that this process starts on temp dirs, with the
// network above and an in-process registry on 127.0.0.1 that serves the
// test busybox image.
type localEnv struct {
	endpoint       string
	image          string
	monitorPattern string
	daemon         *childDaemon

	dir    string // config, state, CNI config and log
	runDir string // short, under /run: conmon's sockets live there
	lock   *os.File
	srv    *http.Server
	netUp  bool
}

// startLocal starts crispd (the binary at path) and waits until it
// answers. On error, what it set up is torn down again.
func startLocal(ctx context.Context, path, keptLog string) (_ *localEnv, retErr error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("-start-crispd needs root")
	}
	crispd, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	e := &localEnv{}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, e.close())
		}
	}()
	if e.lock, err = os.OpenFile(localLock, os.O_CREATE|os.O_RDWR, 0o600); err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(e.lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil, fmt.Errorf("another -start-crispd run holds %s: %w", localLock, err)
	}
	if e.dir, err = os.MkdirTemp("", "crisp-scale-"); err != nil {
		return nil, err
	}
	if e.runDir, err = os.MkdirTemp("/run", "crisp-scale-"); err != nil {
		return nil, err
	}
	if err := e.startRegistry(); err != nil {
		return nil, err
	}
	if err := e.setUpNetwork(); err != nil {
		return nil, err
	}
	level, logPath := "info", filepath.Join(e.dir, "crispd.log")
	if keptLog != "" {
		level, logPath = "debug", keptLog
	}
	cfgPath, err := e.writeConfig(level)
	if err != nil {
		return nil, err
	}
	e.endpoint = "unix://" + filepath.Join(e.runDir, "crisp.sock")
	// conmon's command line names the container's directories under the
	// run dir: that tells this crispd's monitors from any other's.
	e.monitorPattern = `^\S*conmon .*` + regexp.QuoteMeta(e.runDir+"/")
	e.daemon = &childDaemon{args: []string{crispd, "--config", cfgPath}, logPath: logPath}
	if err := e.daemon.start(ctx); err != nil {
		return nil, err
	}
	if err := e.waitUp(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "scale: crispd pid %d on %s (dir %s, log %s), image %s\n",
		e.daemon.cmd.Process.Pid, e.endpoint, e.dir, e.daemon.logPath, e.image)
	return e, nil
}

// startRegistry serves the test busybox image (test/images) on 127.0.0.1.
func (e *localEnv) startRegistry() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	quiet := log.New(io.Discard, "", 0)
	e.srv = &http.Server{Handler: ggcrregistry.New(ggcrregistry.Logger(quiet)), ErrorLog: quiet}
	go e.srv.Serve(ln) // returns when close shuts the server down
	img, err := images.Busybox()
	if err != nil {
		return fmt.Errorf("build the busybox image: %w", err)
	}
	e.image = ln.Addr().String() + "/" + localImage
	ref, err := name.ParseReference(e.image, name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img); err != nil {
		return fmt.Errorf("push %s: %w", e.image, err)
	}
	return nil
}

// setUpNetwork makes the bridge (with a fixed MAC, so the bridge plugin's
// CHECK never sees it change as ports come and go) and the safety route,
// and writes the conflist.
func (e *localEnv) setUpNetwork() error {
	if _, err := net.InterfaceByName(localBridge); err == nil {
		return fmt.Errorf("bridge %s exists: an earlier run did not finish (ip link del %s)", localBridge, localBridge)
	}
	e.netUp = true
	for _, args := range [][]string{
		{"route", "replace", "unreachable", localSubnet, "metric", unreachableMetric},
		{"link", "add", localBridge, "type", "bridge"},
		{"link", "set", localBridge, "address", localBridgeMAC},
		{"link", "set", localBridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	confDir := filepath.Join(e.dir, "net.d")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return err
	}
	// The containerd peer's conflist (see docs/bench-scale.md) but for the
	// bridge, the subnet and the IPAM directory.
	conf := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "crisp-scale",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "isDefaultGateway": false,
     "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [], "dataDir": %q}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, localBridge, localSubnet, filepath.Join(e.dir, "cni-ipam"))
	return os.WriteFile(filepath.Join(confDir, "10-crisp-scale.conflist"), []byte(conf), 0o644)
}

func (e *localEnv) writeConfig(logLevel string) (string, error) {
	cfg := fmt.Sprintf(`run_dir = %q
state_dir = %q
log_level = %q
log_format = "json"

[network]
conf_dir = %q
fallback = "none"
`, e.runDir, filepath.Join(e.dir, "state"), logLevel, filepath.Join(e.dir, "net.d"))
	path := filepath.Join(e.dir, "crisp.toml")
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// waitUp waits until crispd answers Version.
func (e *localEnv) waitUp(ctx context.Context) error {
	conn, err := dial(e.endpoint)
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	deadline := time.Now().Add(time.Minute)
	for {
		vctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := rt.Version(vctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return nil
		}
		if e.daemon.hasExited() {
			return fmt.Errorf("crispd exited during start; log %s:\n%s", e.daemon.logPath, tail(e.daemon.logPath, 20))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("crispd does not answer on %s: %w", e.endpoint, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// close stops crispd, reports and removes what it left (containers,
// mounts), and removes the network, the registry and the dirs. It is
// safe on a partly set up env.
func (e *localEnv) close() error {
	var errs []error
	if e.daemon != nil {
		errs = append(errs, e.daemon.stop())
		errs = append(errs, e.removeLeftContainers())
	}
	if e.srv != nil {
		e.srv.Close()
	}
	if e.netUp {
		if _, err := net.InterfaceByName(localBridge); err == nil {
			if out, err := exec.Command("ip", "link", "del", localBridge).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("ip link del %s: %w: %s", localBridge, err, out))
			}
		}
		_ = exec.Command("ip", "route", "del", "unreachable", localSubnet, "metric", unreachableMetric).Run()
	}
	for _, d := range []string{e.runDir, e.dir} {
		if d == "" {
			continue
		}
		errs = append(errs, unmountUnder(d))
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	if e.lock != nil {
		e.lock.Close()
	}
	return errors.Join(errs...)
}

// removeLeftContainers kills and deletes any container left in the runc
// root of the stopped crispd: a leak, reported as an error.
func (e *localEnv) removeLeftContainers() error {
	root := filepath.Join(e.runDir, "runc")
	if _, err := os.Stat(root); err != nil {
		return nil
	}
	out, err := exec.Command("runc", "--root", root, "list", "-q").Output()
	if err != nil {
		return fmt.Errorf("runc list: %w", err)
	}
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		return nil
	}
	for _, id := range ids {
		_ = exec.Command("runc", "--root", root, "kill", id, "KILL").Run()
		_ = exec.Command("runc", "--root", root, "delete", "-f", id).Run()
	}
	return fmt.Errorf("crispd left %d runc containers (killed and deleted): %v", len(ids), ids)
}

// unmountUnder lazily unmounts every mount below dir, deepest first, and
// reports them: after crispd stopped, any is a leak.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			mounts = append(mounts, fields[4])
		}
	}
	if len(mounts) == 0 {
		return sc.Err()
	}
	slices.Sort(mounts)
	slices.Reverse(mounts)
	for _, m := range mounts {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	return fmt.Errorf("%d mounts left under %s (unmounted): %v", len(mounts), dir, mounts)
}

// tail returns the last n lines of a file, for an error message.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// childDaemon is a crispd that is this process's child, in its own process
// group so that a ^C reaches only this process, which then cleans up.
type childDaemon struct {
	args    []string
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd is reaped
}

func (c *childDaemon) start(context.Context) error {
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(c.args[0], c.args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start crispd: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // reaps it; its exit status is of no interest
		close(done)
	}()
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	c.mu.Unlock()
	return nil
}

func (c *childDaemon) pid() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return 0, errors.New("crispd not started")
	}
	return c.cmd.Process.Pid, nil
}

func (c *childDaemon) hasExited() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for the exit, then SIGKILL after a minute.
func (c *childDaemon) stop() error {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		return errors.New("crispd did not exit within a minute of SIGTERM (killed)")
	}
}
