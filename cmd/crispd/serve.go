package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cmd/internal/config"
	"github.com/crisp-cri/crisp/cmd/internal/logging"
	"github.com/crisp-cri/crisp/cmd/internal/metrics"
	"github.com/crisp-cri/crisp/cri"
	"github.com/crisp-cri/crisp/cri/adminpb"
	"github.com/crisp-cri/crisp/cri/ocispec"
	"github.com/crisp-cri/crisp/cri/stream"
	"github.com/crisp-cri/crisp/cri/validate"
	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/reconciler/node"
	"github.com/crisp-cri/crisp/runtimes/cgstats"
	"github.com/crisp-cri/crisp/runtimes/host"
	"github.com/crisp-cri/crisp/runtimes/layout"
	"github.com/crisp-cri/crisp/runtimes/logkey"
	"github.com/crisp-cri/crisp/runtimes/network"
	"github.com/crisp-cri/crisp/runtimes/oci"
	"github.com/crisp-cri/crisp/runtimes/storage"
	"github.com/crisp-cri/crisp/runtimes/trust"
)

// layerUsageMaxAge is how old a container's writable layer figure may get
// before a stats call queues a fresh walk of it (containerd syncs its
// snapshot usage every 10 s too).
const layerUsageMaxAge = 10 * time.Second

// shutdownTimeout bounds how long in-flight RPCs may finish after SIGTERM.
const shutdownTimeout = 10 * time.Second

// serve runs crispd until SIGTERM or SIGINT; SIGHUP reloads what can be
// reloaded through reload. Start order: state, startup reconcile, sockets,
// loop. Stop order: sockets, loop, database, and the clean-shutdown marker
// last.
func serve(ctx context.Context, cfg config.Config, reload func() (config.Config, error)) (retErr error) {
	up := stepClock{start: time.Now()}
	level := new(slog.LevelVar)
	log, err := logging.New(os.Stderr, level, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	stopReload := reloadOnHUP(cfg, reload, level, log)
	defer stopReload()

	files := layout.New(cfg.RunDir)
	if err := makePrivateDirs(cfg, files); err != nil {
		return err
	}
	clean, err := takeCleanMarker(cfg.CleanMarker(), cfg.Database)
	if err != nil {
		return err
	}
	store, rowsCurrent, err := openState(ctx, cfg, clean, log)
	if err != nil {
		return err
	}
	up.step(log, "start: database open")
	var down stepClock
	defer func() {
		err := store.Close()
		down.step(log, "shutdown: database closed")
		if err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("close state database: %w", err))
			return
		}
		// Written last, only when everything above stopped cleanly.
		if retErr == nil {
			retErr = writeCleanMarker(cfg.CleanMarker(), bootID(cfg.Reconciler.BootIDFile))
		}
	}()

	crispdPath, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find crispd's own binary: %w", err)
	}
	runtimes := map[string]*oci.Runtime{}
	handlers := map[string]cri.Handler{}
	var infoHandlers []*adminpb.RuntimeHandler
	trustCfg := trust.Config{Handlers: map[string]trust.Class{}, TrustedHandler: cfg.Trust.DefaultRuntime,
		UntrustedHandler: cfg.Trust.UntrustedRuntime, DefaultTrust: trust.Class(cfg.Trust.DefaultWorkloadTrust),
		FallbackTrusted: cfg.Trust.UntrustedFallback == "trusted"}
	trustCfg.HostAccessTrusted = cfg.Trust.UntrustedHostAccess == "trusted"
	trustCfg.AllowTrustedRuntimeClass = cfg.Trust.AllowTrustedRuntimeClass
	for _, name := range cfg.HandlerNames() {
		h := cfg.Runtimes[name]
		runtimes[name] = oci.New(oci.Handler{Name: name, Path: h.Path, Root: h.Root, Type: h.Type, ExtraArgs: h.ExtraArgs,
			Network: h.Network, Platform: h.Platform, NetNSShim: []string{crispdPath, "runsc-netns-shim"}, Monitor: []string{crispdPath, "monitor"}},
			cfg.Conmon, files, log)
	}
	// Asked while storage and the network open: each answer is a process.
	features := make(chan map[string]oci.Features, 1)
	go func() { features <- probeFeatures(ctx, runtimes, log) }()
	images, err := storage.Open(storage.Config{
		Driver: cfg.Storage.Driver, DriverOptions: cfg.Storage.DriverOptions,
		GraphRoot: cfg.Storage.GraphRoot, RunRoot: cfg.Storage.RunRoot,
		RegistriesConf: cfg.Storage.RegistriesConf, UnqualifiedSearch: cfg.Storage.UnqualifiedSearch,
		PolicyPath:          cfg.Storage.SignaturePolicy,
		PullProgressTimeout: cfg.Storage.PullProgressTimeout.Duration, UsageInterval: cfg.Storage.UsageRefreshInterval.Duration,
		Pinned: pinnedImages(cfg),
	}, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := images.Shutdown(); err != nil {
			retErr = errors.Join(retErr, err)
		}
		down.step(log, "shutdown: storage shut down")
	}()

	up.step(log, "start: storage open")
	netMgr, err := openNetwork(ctx, cfg, store, files, log)
	if err != nil {
		return err
	}
	up.step(log, "start: network open")
	// Metrics exist even when not served: the interceptors stay cheap.
	mets := metrics.New(store, log)
	var metricsLis net.Listener
	if cfg.MetricsAddress != "" {
		if metricsLis, err = metrics.Listen(cfg.MetricsAddress); err != nil {
			return err
		}
		defer metricsLis.Close()
	}
	rec := newReconciler(cfg, store, node.New(node.Config{Storage: images, Runtimes: runtimes, Network: netMgr,
		Files: files, GraphRoot: cfg.Storage.GraphRoot, Log: log}), mets.ObservePass, log)
	// Reads are served from the rows as they are while the startup
	// reconcile runs; calls that change the node wait for it.
	ready := make(chan struct{})
	feats := <-features
	up.step(log, "start: runtimes probed")
	for _, name := range cfg.HandlerNames() {
		h := cfg.Runtimes[name]
		handlers[name] = cri.Handler{Runtime: runtimes[name], Class: h.Class,
			Annotations:                  ocispec.Passthrough{Pod: h.PodAnnotations, Container: h.ContainerAnnotations},
			PrivilegedWithoutHostDevices: h.PrivilegedWithoutHostDevices, Features: feats[name]}
		infoHandlers = append(infoHandlers, &adminpb.RuntimeHandler{Name: name, Class: h.Class, Path: h.Path, Root: h.Root})
		trustCfg.Handlers[name] = trust.Class(h.Class)
	}

	hostCaps, err := ocispec.CurrentCapabilities()
	if err != nil {
		return fmt.Errorf("read crispd's capabilities: %w", err)
	}
	hostDevices, err := ocispec.HostDevices()
	if err != nil {
		return fmt.Errorf("list host devices: %w", err)
	}
	criServer := cri.NewGRPCServer(cri.GRPCConfig{Log: log.With(slog.String("service", "cri")),
		Validator: validate.New(validate.DefaultLimits(), nil), MaxInFlight: cfg.MaxConcurrentRequests,
		Unary: mets.UnaryInterceptor(), Stream: mets.StreamInterceptor(), Ready: ready})
	mounts, err := host.ReadMounts()
	if err != nil {
		return err
	}
	layers := images.NewLayerUsages(layerUsageMaxAge, log)
	missing := missingControllers(mounts)
	if len(missing) > 0 {
		log.Info("host lacks cgroup controllers: containers' limits for them are dropped", slog.Any("controllers", missing))
	}
	crisvc := cri.NewServer(cri.Deps{Store: store, Images: images, Network: netMgr, Handlers: handlers,
		Trust: trustCfg, Files: files, Log: log,
		Cgroups: cgstats.New(mounts), Layers: layers, NetStats: netMgr, LayerRoot: cfg.Storage.GraphRoot,
		ClampOOMScoreAdj: !hasCap(hostCaps, "CAP_SYS_RESOURCE"), CgroupNamespace: ocispec.HasCgroupNamespace(), MissingControllers: missing, HostCaps: hostCaps, HostDevices: hostDevices,
		CrispdPath: crispdPath, EventBuffer: cfg.EventsBuffer})
	warmed := crisvc.WarmLists(ctx)
	streams, err := stream.New(stream.Config{Addr: cfg.StreamAddress}, crisvc.StreamTargets(), log.With(slog.String("service", "stream")))
	if err != nil {
		return err
	}
	if err := streams.Start(); err != nil {
		return fmt.Errorf("start the streaming server: %w", err)
	}
	defer streams.Stop()
	crisvc.SetStreams(streams)
	runtimeapi.RegisterRuntimeServiceServer(criServer, crisvc)
	runtimeapi.RegisterImageServiceServer(criServer, crisvc)

	adminServer := cri.NewGRPCServer(cri.GRPCConfig{Log: log.With(slog.String("service", "admin")),
		Unary: mets.UnaryInterceptor(), Stream: mets.StreamInterceptor(), Ready: ready})
	info := &adminpb.InfoResponse{
		Version: cri.Version, GoVersion: runtime.Version(), CriApiVersion: cri.CRIAPIVersion,
		Paths: map[string]string{
			"run_dir": cfg.RunDir, "state_dir": cfg.StateDir, "socket": cfg.Socket,
			"admin_socket": cfg.AdminSocket, "database": cfg.Database,
			"storage_graph_root": cfg.Storage.GraphRoot, "storage_run_root": cfg.Storage.RunRoot,
		},
		Handlers: infoHandlers, StartedUnixNano: time.Now().UnixNano(), CleanStart: clean, BootId: bootID(cfg.Reconciler.BootIDFile),
	}
	adminpb.RegisterAdminServer(adminServer, cri.NewAdminServer(adminReconciler{rec}, store, images, info))

	var wg sync.WaitGroup
	// The events reader stops before the gRPC servers do: their graceful
	// stop waits for open GetContainerEvents streams, and stopping the
	// reader ends them.
	eventsCtx, stopEvents := context.WithCancel(context.Background())
	defer stopEvents()
	wg.Go(func() { crisvc.WatchEvents(eventsCtx) })
	errs := make(chan error, 2)
	metricsCtx, stopMetrics := context.WithCancel(context.Background())
	defer stopMetrics()
	if metricsLis != nil {
		wg.Go(func() { mets.Serve(metricsCtx, metricsLis, log.With(slog.String("service", "metrics"))) })
		log.Info("metrics endpoint listening", slog.String("addr", metricsLis.Addr().String()))
	}
	serveSockets := func() error {
		criLis, err := listenUnix(cfg.Socket, 0o660)
		if err != nil {
			return err
		}
		adminLis, err := listenUnix(cfg.AdminSocket, 0o600)
		if err != nil {
			criLis.Close()
			return err
		}
		wg.Go(func() { errs <- criServer.Serve(criLis) })
		wg.Go(func() { errs <- adminServer.Serve(adminLis) })
		log.Info("crispd serving", slog.String("socket", cfg.Socket), slog.String("admin_socket", cfg.AdminSocket),
			slog.String("database", cfg.Database), slog.Bool("clean_start", clean), slog.Bool("reads_before_startup_reconcile", rowsCurrent))
		return nil
	}
	// Rows kept by a crispd of this boot are what kubelet saw: they answer
	// its relist at once, while the startup reconcile repairs what a crash
	// left. Rows rebuilt from the node, or from before a reboot, are not
	// yet what kubelet must see: the sockets open after the pass.
	up.step(log, "start: services built")
	if rowsCurrent {
		if err := serveSockets(); err != nil {
			return err
		}
		// The pass's first step (every runtime container, every storage
		// record) would take the two cores the views need; kubelet's
		// relist comes first, and writes wait for the pass anyway.
		<-warmed
		up.step(log, "start: list views built")
	}
	startupReconcile(ctx, rec, log)
	if !rowsCurrent {
		if err := serveSockets(); err != nil {
			return err
		}
	}
	close(ready)
	loopCtx, stopLoop := context.WithCancel(context.Background())
	wg.Go(func() { rec.Run(loopCtx) })
	wg.Go(func() { layers.Run(loopCtx) })
	wg.Go(func() {
		if err := crisvc.WatchExits(loopCtx); err != nil {
			log.Error("watch container exits", slog.Any(logkey.Err, err))
		}
	})
	notifySystemd(daemon.SdNotifyReady, log)

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
		down.start = time.Now()
	case serveErr = <-errs:
		log.Error("a gRPC server stopped", slog.Any(logkey.Err, serveErr))
	}
	notifySystemd(daemon.SdNotifyStopping, log)
	stopEvents()
	stopMetrics()
	gracefulStop(criServer, adminServer)
	down.step(log, "shutdown: gRPC servers stopped")
	stopLoop()
	wg.Wait()
	down.step(log, "shutdown: loops stopped")
	os.Remove(cfg.Socket)
	os.Remove(cfg.AdminSocket)
	return serveErr
}

// hasCap reports whether caps holds name: without CAP_SYS_RESOURCE a
// negative oom_score_adj makes runc fail, so crisp clamps it.
func hasCap(caps []string, name string) bool {
	for _, c := range caps {
		if c == name {
			return true
		}
	}
	return false
}

// openNetwork sets up CNI: the config directory's network, else the
// built-in bridge on the pod CIDR kubelet last sent (or the configured
// subnet), and watches the directory until ctx is done.
func openNetwork(ctx context.Context, cfg config.Config, store *db.Store, files layout.Layout, log *slog.Logger) (*network.Manager, error) {
	nc := network.Config{
		PluginDirs: cfg.Network.PluginDirs,
		ConfDir:    cfg.Network.ConfDir,
		CacheDir:   filepath.Join(cfg.StateDir, "cni", "cache"),
		NetNSDir:   files.NetNS(),
	}
	ipamDir := filepath.Join(cfg.StateDir, "cni", "ipam")
	if cfg.Network.Fallback == config.FallbackBridge {
		subnets, err := podCIDRs(ctx, cfg, store)
		if err != nil {
			return nil, err
		}
		nc.Fallback = &network.Bridge{Name: cfg.Network.Bridge.Name, Subnets: subnets,
			Egress: network.Egress(cfg.Network.Bridge.Egress), IPAMDir: ipamDir}
	}
	for _, d := range []string{ipamDir, nc.CacheDir, nc.NetNSDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	m, err := network.New(nc, log)
	if err != nil {
		return nil, err
	}
	go func() {
		if err := m.Watch(ctx); err != nil {
			log.Error("cannot watch the cni config directory: a config written there later is not seen until crispd restarts",
				slog.String("dir", nc.ConfDir), slog.Any(logkey.Err, err))
		}
	}()
	return m, nil
}

// podCIDRs are the built-in bridge's subnets: the node's pod CIDR that
// kubelet last sent, which it does not send again to a restarted crispd,
// else the configured subnet.
func podCIDRs(ctx context.Context, cfg config.Config, store *db.Store) ([]netip.Prefix, error) {
	saved, err := store.NodeValue(ctx, db.NodePodCIDR)
	if err != nil {
		return nil, err
	}
	if saved != "" {
		if subnets, err := network.ParseCIDRs(saved); err == nil && network.CheckSubnets(subnets) == nil {
			return subnets, nil
		}
		return nil, fmt.Errorf("the pod CIDR kept in the database (%q) is not usable; UpdateRuntimeConfig checks what it stores", saved)
	}
	return cfg.Network.Bridge.Subnets()
}

// probeFeatures asks every handler's runtime what it can do, all at once:
// each answer costs a process start, which a restart waits for.
func probeFeatures(ctx context.Context, runtimes map[string]*oci.Runtime, log *slog.Logger) map[string]oci.Features {
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := make(map[string]oci.Features, len(runtimes))
	for name, rt := range runtimes {
		wg.Go(func() {
			feats, err := rt.ProbeFeatures(ctx)
			if err != nil {
				log.Info("runtime reports no features: none advertised to kubelet", slog.String(logkey.Runtime, name), slog.Any("error", err))
			}
			mu.Lock()
			out[name] = feats
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// stepClock times the steps of a start or a shutdown, at debug level, so
// that a slow one shows where it waits.
type stepClock struct{ start time.Time }

func (c *stepClock) step(log *slog.Logger, what string) {
	if !c.start.IsZero() {
		log.Debug(what, slog.Duration(logkey.Took, time.Since(c.start)))
	}
}

// gracefulStop lets in-flight RPCs finish, up to shutdownTimeout.
func gracefulStop(servers ...*grpc.Server) {
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			done := make(chan struct{})
			go func() { s.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(shutdownTimeout):
				s.Stop()
			}
		})
	}
	wg.Wait()
}

// listenUnix listens on path with mode, replacing a stale socket file. The
// umask keeps the socket from ever existing with wider permissions.
func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	old := syscall.Umask(int(^mode & 0o777))
	lis, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		lis.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return lis, nil
}

// takeCleanMarker reports whether the previous crispd stopped cleanly and
// removes the marker, so that a crash of this one is noticed next time. A
// first start (no database yet) counts as clean.
func takeCleanMarker(path, database string) (bool, error) {
	err := os.Remove(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		_, statErr := os.Stat(database)
		return errors.Is(statErr, os.ErrNotExist), nil
	default:
		return false, fmt.Errorf("remove clean-shutdown marker: %w", err)
	}
}

// writeCleanMarker records a clean stop with the boot it happened in.
func writeCleanMarker(path, bootID string) error {
	body := fmt.Sprintf("boot_id=%s\nstopped=%s\n", bootID, time.Now().UTC().Format(time.RFC3339Nano))
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		return fmt.Errorf("write clean-shutdown marker: %w", err)
	}
	return nil
}

// bootID identifies this boot of the machine, read from path (the
// kernel's boot_id unless a test fakes it): a restart of crispd keeps it,
// a reboot changes it.
func bootID(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// pinnedImages are the images kubelet's image GC must keep: the
// configured ones and the pause image, when there is one ("" is crispd's
// built-in infra, which is no image).
func pinnedImages(cfg config.Config) []string {
	pinned := slices.Clone(cfg.PinnedImages)
	if cfg.PauseImage != "" {
		pinned = append(pinned, cfg.PauseImage)
	}
	return pinned
}

// missingControllers are the cgroup controllers of CRI's limits that the
// host lacks (this one: hugetlb has no v1 hierarchy).
func missingControllers(mounts host.Mounts) ocispec.MissingControllers {
	var out ocispec.MissingControllers
	for _, c := range ocispec.LimitedControllers {
		if !mounts.HasController(c) {
			out = append(out, c)
		}
	}
	return out
}
