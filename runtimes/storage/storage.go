// Package storage owns crisp's one go.podman.io/storage store: images
// (pull, load, list, status, remove, filesystem usage, through
// go.podman.io/image) and the container records that hold each pod's and
// container's rootfs and crisp's metadata. It knows nothing of SQL or gRPC.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	cstorage "go.podman.io/storage"
	"golang.org/x/sys/unix"
)

// Sentinel errors; cri maps them to gRPC codes.
var (
	ErrImageNotFound    = errors.New("image not found")
	ErrImageInUse       = errors.New("image is in use by a container")
	ErrInvalidReference = errors.New("invalid image reference")
	ErrUnauthorized     = errors.New("registry refused the credentials")
	ErrNotFound         = errors.New("not found")
	// ErrPullStalled: the registry sent nothing for the pull progress
	// timeout, so the pull was cancelled.
	ErrPullStalled = errors.New("pull stalled")
)

// Config says where the store lives and how images are fetched.
type Config struct {
	Driver        string   // overlay (default) or vfs
	DriverOptions []string // e.g. overlay.mountopt=nodev
	GraphRoot     string   // images and container layers
	RunRoot       string   // mounts and locks; a reboot clears it
	// RegistriesConf is a registries.conf(5) file for mirrors, blocked and
	// insecure registries. Empty means the system's: $CONTAINERS_REGISTRIES_CONF,
	// else /etc/containers/registries.conf (and its .d directory).
	RegistriesConf string
	// UnqualifiedSearch resolves short names ("busybox"); empty means the
	// unqualified-search-registries of registries.conf. With neither, a
	// short name is refused.
	UnqualifiedSearch []string
	// PolicyPath is a policy.json(5); empty means /etc/containers/policy.json
	// when it exists, else accept any image.
	PolicyPath string
	// PullProgressTimeout cancels a pull when the registry sends no data
	// for this long while the pull waits on it (ErrPullStalled); 0 never
	// does. A slow pull that keeps receiving is never cut off.
	PullProgressTimeout time.Duration
	// UsageInterval is how often Usage's cached figure is measured again;
	// 0 means DefaultUsageInterval.
	UsageInterval time.Duration
	// Pinned are the images reported pinned (see pins): exact references,
	// or qualified prefixes ending in *.
	Pinned []string
}

// defaultPolicyPath is the system signature policy, honoured when present.
const defaultPolicyPath = "/etc/containers/policy.json"

// Store is crisp's image and container storage. It is safe for concurrent
// use; concurrent pulls of the same image share one download.
type Store struct {
	store  cstorage.Store
	cfg    Config
	policy *signature.Policy
	log    *slog.Logger

	mu      sync.Mutex
	pulls   map[string]*flight // in-progress pulls by reference and credentials
	stageMu sync.Mutex         // a direct pull's check-and-apply of a staged layer
	busy    int                // pull goroutines running, joined or not

	usage *usageCache
	pins  pins

	// Pulls and the usage refresh run on their own goroutines; Shutdown
	// cancels and waits for them.
	stopPulls context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup // pulls
	usageLoop sync.WaitGroup
}

// Open opens (creating if needed) the store. Call Shutdown when done.
func Open(cfg Config, log *slog.Logger) (*Store, error) {
	if cfg.Driver == "" {
		cfg.Driver = "overlay"
	}
	if cfg.GraphRoot == "" || cfg.RunRoot == "" {
		return nil, fmt.Errorf("open storage: graph root and run root must be set")
	}
	policy, err := loadPolicy(cfg.PolicyPath)
	if err != nil {
		return nil, err
	}
	st, err := cstorage.GetStore(cstorage.StoreOptions{
		RunRoot:            cfg.RunRoot,
		GraphRoot:          cfg.GraphRoot,
		GraphDriverName:    cfg.Driver,
		GraphDriverOptions: cfg.DriverOptions,
	})
	if err != nil {
		return nil, fmt.Errorf("open storage (%s driver, %s): %w", cfg.Driver, cfg.GraphRoot, err)
	}
	stop, cancel := context.WithCancel(context.Background())
	s := &Store{store: st, cfg: cfg, policy: policy, log: log, pulls: map[string]*flight{}, usage: newUsageCache(), stopPulls: stop, cancel: cancel}
	if s.pins, err = s.parsePins(cfg.Pinned); err != nil {
		cancel()
		st.Shutdown(false)
		return nil, err
	}
	every := cfg.UsageInterval
	if every <= 0 {
		every = DefaultUsageInterval
	}
	if err := resetDir(s.pullTmp()); err != nil {
		cancel()
		st.Shutdown(false)
		return nil, err
	}
	if cfg.Driver == "overlay" {
		s.pruneStaging()
	}
	s.usageLoop.Go(func() { s.refreshUsage(stop, every) })
	return s, nil
}

// loadPolicy reads the signature policy, or accepts anything when the
// operator configured none (there is nothing to verify against).
func loadPolicy(path string) (*signature.Policy, error) {
	if path == "" {
		if _, err := os.Stat(defaultPolicyPath); err != nil {
			return &signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}}, nil
		}
		path = defaultPolicyPath
	}
	p, err := signature.NewPolicyFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("signature policy %s: %w", path, err)
	}
	return p, nil
}

// Shutdown cancels pulls in flight and waits for them, then releases the
// store. It unmounts nothing that containers still use: their rootfs
// mounts outlive crispd on purpose.
func (s *Store) Shutdown() error {
	s.cancel()
	s.wg.Wait()
	s.usageLoop.Wait()
	if _, err := s.store.Shutdown(false); err != nil && !errors.Is(err, cstorage.ErrLayerUsedByContainer) {
		return fmt.Errorf("shut down storage: %w", err)
	}
	return nil
}

// GraphRoot is where images and layers live.
func (s *Store) GraphRoot() string { return s.store.GraphRoot() }

// Driver is the graph driver in use.
func (s *Store) Driver() string { return s.cfg.Driver }

// pullTmp is where pulls keep blobs until they are committed: in the
// graph root, so that they are on the store's own filesystem (not the
// host's /var/tmp), and a pull's leftovers are in crisp's dirs, where
// Open clears what a crash left.
func (s *Store) pullTmp() string { return filepath.Join(s.cfg.GraphRoot, "pull-tmp") }

// pruneStaging removes the staging directories of direct pulls that a
// killed crispd left behind. c/storage prunes them only when it shuts
// down with no layer mounted, which on a node with containers is never.
// A directory whose lock another process still holds is in use.
func (s *Store) pruneStaging() {
	base := filepath.Join(s.cfg.GraphRoot, "overlay", "staging")
	dirs, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, d := range dirs {
		dir := filepath.Join(base, d.Name())
		if !stagingUnused(filepath.Join(dir, "staging.lock")) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			s.log.Warn("remove a pull's leftover staging directory", "dir", dir, "err", err)
			continue
		}
		s.log.Info("removed a pull's leftover staging directory", "dir", dir)
	}
}

// stagingUnused: no process holds the lock c/storage keeps on a staging
// directory while it is in use (an fcntl write lock, released when its
// holder dies).
func stagingUnused(lockPath string) bool {
	f, err := os.OpenFile(lockPath, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	if err != nil {
		return false
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	return unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk) == nil
}

// resetDir empties dir, creating it if needed.
func resetDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clear %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return nil
}

// systemContext is the c/image context of one operation.
func (s *Store) systemContext() *types.SystemContext {
	return &types.SystemContext{
		BigFilesTemporaryDir:     s.pullTmp(),
		SystemRegistriesConfPath: s.cfg.RegistriesConf,
		// Signatures are checked by policy, never looked up on the host's
		// registries.d lookaside unless the policy asks.
		DockerRegistryUserAgent: "crisp",
	}
}
