// Package network owns pod networking on the node: each pod's pinned
// network namespace (a bind mount under crisp's own netns directory) and its
// CNI attachment, run through libcni with the plugin binaries on disk
// (Debian's /usr/lib/cni by default). It also reads host-local's allocation
// files so that the reconciler can find leaked IPs.
//
// It imports no crisp package except runtimes/logkey, and knows nothing of
// SQL, gRPC or CRI types: callers hand it plain ids, names and paths.
package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// DefaultPluginDir is where Debian's containernetworking-plugins package
// installs the CNI plugin binaries.
const DefaultPluginDir = "/usr/lib/cni"

// ErrPluginNotFound is wrapped by Status when a plugin type named in the
// conflist has no executable in any of the plugin directories.
var ErrPluginNotFound = errors.New("cni plugin not found")

// Config says where the plugins are, which network to attach pods to, and
// where crisp keeps its own state. Every path must be absolute.
type Config struct {
	// PluginDirs are searched in order for plugin binaries.
	// Empty means []string{DefaultPluginDir}.
	PluginDirs []string
	// ConfList is a CNI conflist (JSON). Empty means DefaultConfList(IPAMDir).
	ConfList []byte
	// IPAMDir is the host-local dataDir written into the default conflist;
	// required when ConfList is empty, ignored otherwise (a conflist of
	// one's own names its own dataDir). Put it under the run dir
	// (e.g. <run_dir>/cni/ipam) so that a reboot, which destroys every
	// netns, also forgets every allocation.
	IPAMDir string
	// CacheDir is libcni's result cache (e.g. <run_dir>/cni/cache). DEL
	// reads the ADD result, the conflist and the port mappings from it.
	CacheDir string
	// NetNSDir holds the netns pins, one file per pod (e.g. <run_dir>/netns).
	// It is crisp's own directory, never /var/run/netns, so that crisp and
	// `ip netns` never touch each other's namespaces.
	NetNSDir string
}

// Manager creates and removes pinned network namespaces and attaches pods
// to the configured CNI network. It holds no per-pod state: everything it
// needs lives on disk (pins, libcni cache, host-local files), so a restarted
// daemon can tear down what an earlier one set up.
//
// Its methods are safe for concurrent use on different pods. The caller must
// serialise Setup, Check and Teardown of the same pod.
type Manager struct {
	dirs     []string
	netnsDir string
	cni      *libcni.CNIConfig
	list     *libcni.NetworkConfigList
	types    []string // plugin and IPAM types of the conflist, in order
	ipamDirs []string // host-local <dataDir>/<network name> directories
	log      *slog.Logger
}

// New parses the conflist and prepares libcni. It fails on a missing or
// relative directory and on a conflist that does not parse; a missing plugin
// binary is only logged (at Warn) and reported by Status, so that the daemon
// can start and report NetworkReady=false until the plugins are installed,
// which is what kubelet expects.
func New(cfg Config, log *slog.Logger) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dirs := cfg.PluginDirs
	if len(dirs) == 0 {
		dirs = []string{DefaultPluginDir}
	}
	for _, d := range append([]string{cfg.CacheDir, cfg.NetNSDir}, dirs...) {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("network config: directory %q is not an absolute path", d)
		}
	}
	conf := cfg.ConfList
	if len(conf) == 0 {
		if !filepath.IsAbs(cfg.IPAMDir) {
			return nil, fmt.Errorf("network config: the default conflist needs an absolute IPAMDir, got %q", cfg.IPAMDir)
		}
		conf = DefaultConfList(cfg.IPAMDir)
	}
	list, err := parseConfList(conf)
	if err != nil {
		return nil, err
	}
	ipamDirs, warnings := hostLocalDirs(list)
	for _, w := range warnings {
		log.Warn("cni conflist", slog.String("warning", w))
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
		cni:      libcni.NewCNIConfigWithCacheDir(dirs, cfg.CacheDir, exec),
		list:     list,
		types:    pluginTypes(list),
		ipamDirs: ipamDirs,
		log:      log.With(slog.String("network", list.Name)),
	}
	if err := m.Status(); err != nil {
		m.log.Warn("cni network not ready", slog.Any(logkey.Err, err))
	}
	return m, nil
}

// Status reports whether the network can be used: nil when every plugin
// type of the conflist, IPAM plugins included, has an executable file in
// the plugin directories, else an error wrapping ErrPluginNotFound that
// names each missing plugin. It only stats files, so it is cheap enough for
// every CRI Status call. Safe for concurrent use.
func (m *Manager) Status() error {
	var errs []error
	for _, t := range m.types {
		p, err := invoke.FindInPath(t, m.dirs)
		if err != nil {
			errs = append(errs, fmt.Errorf("network %q: plugin %q not in %v: %w", m.list.Name, t, m.dirs, ErrPluginNotFound))
			continue
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			errs = append(errs, fmt.Errorf("network %q: plugin %s is not executable: %w", m.list.Name, p, ErrPluginNotFound))
		}
	}
	return errors.Join(errs...)
}

// Name returns the CNI network name from the conflist. Safe for concurrent
// use.
func (m *Manager) Name() string { return m.list.Name }

// stderrLog sends what plugins print on stderr to the debug log. libcni
// writes to it from concurrent plugin runs; slog handlers are safe for that.
type stderrLog struct{ log *slog.Logger }

func (w stderrLog) Write(p []byte) (int, error) {
	w.log.Log(context.Background(), slog.LevelDebug, "cni plugin stderr", slog.String("out", string(p)))
	return len(p), nil
}
