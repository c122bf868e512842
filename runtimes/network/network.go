// Package network owns pod networking on the node: each pod's pinned
// network namespace (a bind mount under crisp's own netns directory) and its
// CNI attachment, run through libcni with the plugin binaries on disk
// (Debian's /usr/lib/cni by default). The network comes from the node's CNI
// config directory, watched for changes, or else from crisp's built-in
// bridge. It also reads host-local's allocation files so that the
// reconciler can find leaked IPs.
//
// It imports no crisp package except runtimes/logkey, and knows nothing of
// SQL, gRPC or CRI types: callers hand it plain ids, names and paths.
package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// DefaultPluginDir is where Debian's containernetworking-plugins package
// installs the CNI plugin binaries.
const DefaultPluginDir = "/usr/lib/cni"

// Errors wrapped by Status and Setup.
var (
	// ErrPluginNotFound: a plugin type named in the network's config has
	// no executable in any of the plugin directories.
	ErrPluginNotFound = errors.New("cni plugin not found")
	// ErrNoNetwork: the config directory holds no usable network config
	// and there is no built-in fallback. Pods wait for one.
	ErrNoNetwork = errors.New("no cni network config")
)

// Config says where the plugins are, where the network comes from, and
// where crisp keeps its own state. Every path must be absolute.
type Config struct {
	// PluginDirs are searched in order for plugin binaries.
	// Empty means []string{DefaultPluginDir}.
	PluginDirs []string
	// ConfDir is the node's CNI config directory (/etc/cni/net.d), which a
	// CNI DaemonSet writes into. The first file by name ending in
	// .conflist, .conf or .json that holds a usable config is the network;
	// Watch picks up changes. Empty: no directory.
	ConfDir string
	// Fallback is the network while ConfDir holds none. Nil: none, and
	// Status reports ErrNoNetwork until a config appears.
	Fallback *Bridge
	// CacheDir is libcni's result cache (e.g. <run_dir>/cni/cache). DEL
	// reads the ADD result, the conflist and the port mappings from it.
	CacheDir string
	// NetNSDir holds the netns pins, one file per pod (e.g. <run_dir>/netns).
	// It is crisp's own directory, never /var/run/netns, so that crisp and
	// `ip netns` never touch each other's namespaces.
	NetNSDir string
}

// Manager creates and removes pinned network namespaces and attaches pods
// to the current CNI network. It holds no per-pod state: everything it
// needs lives on disk (pins, libcni cache, host-local files), so a restarted
// daemon can tear down what an earlier one set up, on whichever network the
// pod was attached to.
//
// Its methods are safe for concurrent use on different pods. The caller must
// serialise Setup, Check and Teardown of the same pod.
type Manager struct {
	dirs     []string
	netnsDir string
	confDir  string
	cni      *libcni.CNIConfig
	log      *slog.Logger

	cur atomic.Pointer[netConf] // nil: no network

	mu       sync.Mutex // serialises reloads and fallback changes
	fallback *Bridge
}

// netConf is one network config, as loaded.
type netConf struct {
	list     *libcni.NetworkConfigList
	source   string   // the file it came from, or "built-in"
	types    []string // plugin and IPAM types, in order
	ipamDirs []string // host-local <dataDir>/<network name> directories
}

// New checks the directories, loads the network (the config directory's,
// else the fallback) and prepares libcni. A config directory that does not
// exist is created. A missing plugin binary or the lack of any network is
// only logged and reported by Status, so that the daemon can start and
// report NetworkReady=false until the CNI DaemonSet has installed its
// plugins and config, which is what kubelet expects.
func New(cfg Config, log *slog.Logger) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dirs := cfg.PluginDirs
	if len(dirs) == 0 {
		dirs = []string{DefaultPluginDir}
	}
	abs := append([]string{cfg.CacheDir, cfg.NetNSDir}, dirs...)
	if cfg.ConfDir != "" {
		abs = append(abs, cfg.ConfDir)
	}
	for _, d := range abs {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("network config: directory %q is not an absolute path", d)
		}
	}
	if cfg.Fallback != nil {
		if err := cfg.Fallback.check(); err != nil {
			return nil, err
		}
	}
	if cfg.ConfDir != "" {
		if err := os.MkdirAll(cfg.ConfDir, 0o755); err != nil {
			return nil, fmt.Errorf("network config: %w", err)
		}
	}
	// An explicit exec also keeps libcni from filling in its default lazily,
	// which would be a data race between concurrent calls.
	exec := &invoke.DefaultExec{
		RawExec:       &invoke.RawExec{Stderr: stderrLog{log}},
		PluginDecoder: version.PluginDecoder{},
	}
	m := &Manager{
		dirs:     dirs,
		netnsDir: filepath.Clean(cfg.NetNSDir),
		confDir:  cfg.ConfDir,
		cni:      libcni.NewCNIConfigWithCacheDir(dirs, cfg.CacheDir, exec),
		log:      log,
		fallback: cfg.Fallback,
	}
	m.Reload()
	return m, nil
}

// Status reports whether pods can be attached: nil when there is a network
// and every plugin type of its config, IPAM plugins included, has an
// executable file in the plugin directories; else an error wrapping
// ErrNoNetwork or ErrPluginNotFound that says what is missing. It only
// stats files, so it is cheap enough for every CRI Status call. Safe for
// concurrent use.
func (m *Manager) Status() error {
	n := m.cur.Load()
	if n == nil {
		return m.noNetwork()
	}
	var errs []error
	for _, t := range n.types {
		p, err := invoke.FindInPath(t, m.dirs)
		if err != nil {
			errs = append(errs, fmt.Errorf("network %q (%s): plugin %q not in %v: %w", n.list.Name, n.source, t, m.dirs, ErrPluginNotFound))
			continue
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			errs = append(errs, fmt.Errorf("network %q (%s): plugin %s is not executable: %w", n.list.Name, n.source, p, ErrPluginNotFound))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) noNetwork() error {
	if m.confDir == "" {
		return fmt.Errorf("no network configured (no config directory, no built-in bridge): %w", ErrNoNetwork)
	}
	return fmt.Errorf("%s holds no network config (.conflist, .conf or .json) yet: %w", m.confDir, ErrNoNetwork)
}

// Name returns the current network's name, "" when there is none. Safe for
// concurrent use.
func (m *Manager) Name() string {
	if n := m.cur.Load(); n != nil {
		return n.list.Name
	}
	return ""
}

// Source returns where the current network's config came from: a file of
// the config directory, "built-in", or "" when there is none.
func (m *Manager) Source() string {
	if n := m.cur.Load(); n != nil {
		return n.source
	}
	return ""
}

// SetPodCIDRs gives the built-in bridge the node's pod CIDRs (kubelet's
// UpdateRuntimeConfig), at most one per address family. Pods attached
// later get their addresses from them; attached pods keep theirs. Without
// a built-in bridge it does nothing. Safe for concurrent use.
func (m *Manager) SetPodCIDRs(cidrs []netip.Prefix) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fallback == nil {
		return nil
	}
	b := *m.fallback
	b.Subnets = cidrs
	if err := b.check(); err != nil {
		return err
	}
	m.fallback = &b
	m.reloadLocked()
	return nil
}

// Reload picks the network again: the first usable config of the config
// directory, else the fallback. Pods attached earlier stay on the network
// they were attached to; Teardown finds it in libcni's cache. Watch calls
// it on every change of the directory. Safe for concurrent use.
func (m *Manager) Reload() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reloadLocked()
}

func (m *Manager) reloadLocked() {
	n := m.pick()
	old := m.cur.Load()
	if n == nil {
		m.cur.Store(nil)
		if old != nil {
			m.log.Warn("cni network config gone; new pods wait for one", slog.String("network", old.list.Name),
				slog.String("was", old.source), slog.Any(logkey.Err, m.noNetwork()))
		}
		return
	}
	if old != nil && old.source == n.source && string(old.list.Bytes) == string(n.list.Bytes) {
		return
	}
	m.cur.Store(n)
	m.log.Info("cni network config loaded", slog.String("network", n.list.Name), slog.String("source", n.source))
	if err := m.Status(); err != nil {
		m.log.Warn("cni network not ready", slog.Any(logkey.Err, err))
	}
}

// pick loads the first usable config of the directory, else the fallback.
func (m *Manager) pick() *netConf {
	if m.confDir != "" {
		list, path, skipped := firstConfig(m.confDir)
		for _, s := range skipped {
			m.log.Warn("cni config file skipped", slog.String("file", s.path), slog.Any(logkey.Err, s.err))
		}
		if list != nil {
			return m.newNetConf(list, path)
		}
	}
	if m.fallback == nil {
		return nil
	}
	list, err := parseConfList(m.fallback.ConfList())
	if err != nil { // a bug: check() accepted what the template cannot carry
		m.log.Error("built-in bridge config", slog.Any(logkey.Err, err))
		return nil
	}
	return m.newNetConf(list, sourceBuiltIn)
}

// sourceBuiltIn is the source of the built-in bridge's config.
const sourceBuiltIn = "built-in"

func (m *Manager) newNetConf(list *libcni.NetworkConfigList, source string) *netConf {
	ipamDirs, warnings := hostLocalDirs(list)
	for _, w := range warnings {
		m.log.Warn("cni config", slog.String("source", source), slog.String("warning", w))
	}
	return &netConf{list: list, source: source, types: pluginTypes(list), ipamDirs: ipamDirs}
}

// stderrLog sends what plugins print on stderr to the debug log. libcni
// writes to it from concurrent plugin runs; slog handlers are safe for that.
type stderrLog struct{ log *slog.Logger }

func (w stderrLog) Write(p []byte) (int, error) {
	w.log.Log(context.Background(), slog.LevelDebug, "cni plugin stderr", slog.String("out", string(p)))
	return len(p), nil
}
