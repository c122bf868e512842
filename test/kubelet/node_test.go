package kubelet

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/crisp-cri/crisp/test/harness"
)

// nodeName is kubelet's --hostname-override: static pods are named
// "<manifest name>-<node name>", whatever the machine is called.
const nodeName = "crisp-kubelet-test"

// hostSysctls are the kernel settings kubelet wants (setupKernelTunables in
// pkg/kubelet/cm). kubelet either rewrites them on the host (panic_on_oops
// = 1 would make any oops panic this machine) or, with
// protectKernelDefaults, refuses to start. It runs with
// protectKernelDefaults in a mount namespace of its own, where these files
// are covered by files holding the values it wants: it starts, and the
// host's settings are never touched.
var hostSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// kubeletBinary finds kubelet: $CRISP_KUBELET, else the bin dir's kubelet
// (`make kubelet` links the cached build there). Missing, the test skips,
// loudly; under CI it fails.
func kubeletBinary(t testing.TB) string {
	t.Helper()
	path := os.Getenv("CRISP_KUBELET")
	if path == "" {
		path = filepath.Join(harness.Bins(t), "kubelet")
	}
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("no kubelet at %s, and CI must run this test: `make kubelet` builds it", path)
	}
	t.Skipf("SKIPPED: no kubelet at %s (`make kubelet` builds it, or set CRISP_KUBELET)", path)
	return ""
}

// node is one standalone kubelet: static pods from a manifest dir, no API
// server, every server on 127.0.0.1, everything it writes under dir.
type node struct {
	t          testing.TB
	dir        string
	manifests  string
	podLogs    string
	cgroupRoot string // its own, under every cgroup v1 hierarchy
	readOnly   string // base URL of the read-only server
	healthz    string
	logFile    string
	cmd        *exec.Cmd
	done       chan error
	stopped    bool
	// cleanupPods removes kubelet's pods from the runtime once kubelet is
	// gone, before its cgroups are removed.
	cleanupPods func()
}

// nodeOptions are what differs between the kubelets of the tests.
type nodeOptions struct {
	endpoint     string          // CRI endpoint, "unix:///..."
	featureGates map[string]bool // besides PodAndContainerStatsFromCRI
	cleanupPods  func()
}

var nodeCount atomic.Int32

// startNode starts kubelet against opts.endpoint and waits until its
// healthz answers. At test end it is stopped (see stop) if it still runs.
func startNode(t testing.TB, opts nodeOptions) *node {
	t.Helper()
	bin := kubeletBinary(t)
	// Short: kubelet puts unix sockets (pod-resources, device plugins)
	// under its root dir, and a socket path has 107 bytes at most.
	dir, err := os.MkdirTemp("", "kubelet-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &node{
		t: t, dir: dir,
		manifests:   filepath.Join(dir, "manifests"),
		podLogs:     filepath.Join(dir, "pod-logs"),
		cgroupRoot:  fmt.Sprintf("/crisp-kubelet-%d-%d", os.Getpid(), nodeCount.Add(1)),
		logFile:     filepath.Join(dir, "kubelet.log"),
		cleanupPods: opts.cleanupPods,
	}
	for _, d := range []string{n.manifests, n.podLogs, filepath.Join(dir, "root"), filepath.Join(dir, "var-log")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(n.stop)
	makeCgroupRoot(t, n.cgroupRoot)
	config := n.writeConfig(opts)
	n.start(bin, config)
	n.waitHealthy()
	return n
}

// writeConfig writes kubelet's configuration file and returns its path.
func (n *node) writeConfig(opts nodeOptions) string {
	n.t.Helper()
	readOnlyPort, healthzPort, serverPort := freePort(n.t), freePort(n.t), freePort(n.t)
	n.readOnly = fmt.Sprintf("http://127.0.0.1:%d", readOnlyPort)
	n.healthz = fmt.Sprintf("http://127.0.0.1:%d/healthz", healthzPort)
	gates := map[string]bool{"PodAndContainerStatsFromCRI": true}
	for k, v := range opts.featureGates {
		gates[k] = v
	}
	cfg := map[string]any{
		"apiVersion":    "kubelet.config.k8s.io/v1beta1",
		"kind":          "KubeletConfiguration",
		"staticPodPath": n.manifests,
		// The file source also watches with inotify; this is its rescan.
		"fileCheckFrequency":       "1s",
		"syncFrequency":            "10s",
		"podLogsDir":               n.podLogs,
		"volumePluginDir":          filepath.Join(n.dir, "volume-plugins"),
		"address":                  "127.0.0.1",
		"port":                     serverPort,
		"readOnlyPort":             readOnlyPort,
		"healthzBindAddress":       "127.0.0.1",
		"healthzPort":              healthzPort,
		"authentication":           map[string]any{"anonymous": map[string]any{"enabled": true}, "webhook": map[string]any{"enabled": false}},
		"authorization":            map[string]any{"mode": "AlwaysAllow"},
		"containerRuntimeEndpoint": opts.endpoint,
		"imageServiceEndpoint":     opts.endpoint,
		"cgroupDriver":             "cgroupfs",
		"cgroupRoot":               n.cgroupRoot,
		"failCgroupV1":             false,
		"failSwapOn":               false,
		// root here lacks CAP_SYS_RESOURCE: kubelet may not lower its own score.
		"oomScoreAdj":           0,
		"protectKernelDefaults": true,
		// The host's disk is not the test's: no eviction, no image GC.
		"evictionHard":                map[string]string{"memory.available": "0%"},
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"resolvConf":                  "",
		"featureGates":                gates,
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		n.t.Fatal(err)
	}
	path := filepath.Join(n.dir, "kubelet.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		n.t.Fatal(err)
	}
	return path
}

// start runs kubelet in a mount namespace of its own (see hostSysctls):
// its rshared root dir and the covers it sees there vanish with it. /var/log
// is covered too, for the legacy /var/log/containers links kubelet makes.
func (n *node) start(bin, config string) {
	n.t.Helper()
	var script strings.Builder
	script.WriteString("set -e\n")
	for name, value := range hostSysctls {
		cover := filepath.Join(n.dir, "sysctl", strings.ReplaceAll(name, "/", "."))
		if err := os.MkdirAll(filepath.Dir(cover), 0o755); err != nil {
			n.t.Fatal(err)
		}
		if err := os.WriteFile(cover, []byte(value+"\n"), 0o444); err != nil {
			n.t.Fatal(err)
		}
		fmt.Fprintf(&script, "mount --bind %s %s\n", shellQuote(cover), shellQuote("/proc/sys/"+name))
	}
	fmt.Fprintf(&script, "mount --bind %s /var/log\n", shellQuote(filepath.Join(n.dir, "var-log")))
	script.WriteString("exec \"$@\"\n")

	logf, err := os.Create(n.logFile)
	if err != nil {
		n.t.Fatal(err)
	}
	args := []string{"-c", script.String(), "kubelet", bin,
		"--config=" + config,
		"--root-dir=" + filepath.Join(n.dir, "root"),
		"--cert-dir=" + filepath.Join(n.dir, "pki"),
		"--hostname-override=" + nodeName,
		"--v=2",
	}
	n.cmd = exec.Command("/bin/sh", args...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	// Go makes / rprivate in the new namespace before the shell runs.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		n.t.Fatalf("start kubelet: %v", err)
	}
	n.done = make(chan error, 1)
	go func() {
		n.done <- n.cmd.Wait()
		logf.Close()
	}()
}

// waitHealthy waits for kubelet's healthz, failing at once if it exits.
func (n *node) waitHealthy() {
	n.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(n.healthz)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		select {
		case exitErr := <-n.done:
			n.done <- exitErr
			n.t.Fatalf("kubelet exited during start: %v\n%s", exitErr, n.logTail(60))
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("kubelet healthz did not answer within 2m: %v\n%s", err, n.logTail(60))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// alive fails the test if kubelet has exited.
func (n *node) alive() {
	n.t.Helper()
	select {
	case err := <-n.done:
		n.done <- err
		n.t.Fatalf("kubelet exited: %v\n%s", err, n.logTail(60))
	default:
	}
}

// stop kills kubelet (as a node losing it would) and waits for it, has
// its pods removed from the runtime, then removes its cgroups, reporting
// any that still holds a process. The log goes to the test output when the
// test failed. Only the first call does anything.
func (n *node) stop() {
	if n.stopped {
		return
	}
	n.stopped = true
	if n.cmd != nil {
		n.cmd.Process.Kill()
		<-n.done
		n.cmd = nil
	}
	if n.t.Failed() {
		n.t.Logf("kubelet log (tail):\n%s", n.logTail(200))
	}
	if n.cleanupPods != nil {
		n.cleanupPods()
	}
	removeCgroupRoot(n.t, n.cgroupRoot)
}

// logTail returns the last lines of kubelet's log.
func (n *node) logTail(lines int) string {
	f, err := os.Open(n.logFile)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var all []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		all = append(all, sc.Text())
	}
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// get fetches path from the read-only server.
func (n *node) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.readOnly+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return body, nil
}

// getJSON fetches path from the read-only server and decodes it into v.
func (n *node) getJSON(ctx context.Context, path string, v any) error {
	body, err := n.get(ctx, path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// freePort returns a TCP port free on 127.0.0.1 a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// cgroupHierarchies returns the mount points of the cgroup v1 hierarchies
// and, with unified, of the cgroup2 one too (runc may mirror a v1 path
// there on a hybrid host).
func cgroupHierarchies(t testing.TB, unified bool) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		for i, f := range fields {
			if f != "-" || i+1 >= len(fields) {
				continue
			}
			if fstype := fields[i+1]; fstype == "cgroup" || (unified && fstype == "cgroup2") {
				dirs = append(dirs, fields[4])
			}
		}
	}
	return dirs
}

// makeCgroupRoot creates kubelet's cgroup root in every hierarchy: kubelet
// refuses a cgroupRoot that does not exist.
func makeCgroupRoot(t testing.TB, root string) {
	t.Helper()
	hierarchies := cgroupHierarchies(t, false)
	if len(hierarchies) == 0 {
		t.Fatalf("no cgroup v1 hierarchy mounted; this test drives kubelet on a cgroup v1 host")
	}
	for _, h := range hierarchies {
		dir := filepath.Join(h, root)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("create kubelet cgroup root: %v", err)
		}
		if filepath.Base(h) == "cpuset" {
			inheritCpuset(t, h, dir)
		}
	}
}

// inheritCpuset copies the parent's cpus and mems: a v1 cpuset cgroup
// starts empty, and no process could join it or its children.
func inheritCpuset(t testing.TB, parent, dir string) {
	t.Helper()
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		b, err := os.ReadFile(filepath.Join(parent, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
}

// removeCgroupRoot removes kubelet's cgroup tree, deepest first. A cgroup
// that still holds a process cannot be removed: that is a leak, reported.
func removeCgroupRoot(t testing.TB, root string) {
	t.Helper()
	for _, h := range cgroupHierarchies(t, true) {
		var dirs []string
		filepath.WalkDir(filepath.Join(h, root), func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
				t.Errorf("cgroup left behind: %s: %v (tasks: %s)", dirs[i], err, cgroupTasks(dirs[i]))
			}
		}
	}
}

func cgroupTasks(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "tasks"))
	return strconv.Quote(strings.TrimSpace(string(b)))
}

// podCgroups returns the pod cgroups (pod<uid>) kubelet holds in the memory
// hierarchy.
func (n *node) podCgroups() []string {
	var pods []string
	filepath.WalkDir(filepath.Join("/sys/fs/cgroup/memory", n.cgroupRoot), func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.HasPrefix(d.Name(), "pod") {
			pods = append(pods, d.Name())
			return filepath.SkipDir
		}
		return nil
	})
	return pods
}
