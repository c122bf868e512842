package cri

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crisp-cri/crisp/cri/failpoint"
	"github.com/crisp-cri/crisp/cri/ocispec"
	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/logkey"
	"github.com/crisp-cri/crisp/runtimes/oci"
	"github.com/crisp-cri/crisp/runtimes/storage"
)

// CreateContainer creates a container in a ready pod: the row first (state
// creating), then its rootfs, its OCI spec and the runtime container under
// conmon, then state created. A failure undoes the steps done, in reverse.
func (s *Server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	cfg := req.GetConfig()
	t := startSteps()
	sb, err := s.sandboxFor(ctx, req.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.Metadata.Name, err)
	}
	if sb.State != db.SandboxReady {
		return nil, fmt.Errorf("create container %s: pod sandbox %s is %s, not ready: %w", cfg.Metadata.Name, sb.ID, sb.State, ErrPrecondition)
	}
	sbCfg, err := sandboxConfig(sb)
	if err != nil {
		return nil, err
	}
	if err := ocispec.CheckContainerInPod(cfg, ocispec.Sandbox{Privileged: sb.Privileged, Config: sbCfg}); err != nil {
		return nil, fmt.Errorf("create container %s in pod %s: %w", cfg.Metadata.Name, sb.ID, err)
	}
	if err := checkHandlerFeatures(cfg, sb.Handler, s.handler(sb.Handler)); err != nil {
		return nil, fmt.Errorf("create container %s in pod %s: %w", cfg.Metadata.Name, sb.ID, err)
	}
	t.done("lookup")
	img, err := s.images.Status(ctx, cfg.Image.Image)
	if err != nil {
		return nil, fmt.Errorf("create container %s: image %s: %w", cfg.Metadata.Name, cfg.Image.Image, err)
	}
	t.done("image")
	logPath, err := containerLogPath(sb.LogDir, cfg.LogPath)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.Metadata.Name, err)
	}
	blob, hash, err := configHash(cfg, sb.ID)
	if err != nil {
		return nil, err
	}
	row := db.Container{
		ID: db.NewID(), SandboxID: sb.ID, Name: containerName(cfg.Metadata, sbCfg.Metadata), KubeName: cfg.Metadata.Name,
		Attempt: cfg.Metadata.Attempt, Image: cfg.Image.Image, ImageRef: imageID(img), LogPath: logPath,
		Labels: cfg.Labels, Annotations: cfg.Annotations, Config: blob, ConfigHash: hash,
	}
	for {
		got, created, err := s.store.CreateContainer(ctx, row)
		if err != nil {
			return nil, fmt.Errorf("create container %s in pod %s: %w", cfg.Metadata.Name, sb.ID, err)
		}
		if created {
			break
		}
		// kubelet's retry of a call that timed out: the first call's
		// container, once made; if that call fails and undoes itself
		// meanwhile, this one tries.
		c, err := s.store.WaitContainer(ctx, got.ID)
		if errors.Is(err, db.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create container %s: waiting for the same request in flight (%s): %w", cfg.Metadata.Name, got.ID, err)
		}
		return &runtimeapi.CreateContainerResponse{ContainerId: c.ID}, nil
	}
	t.done("row")
	failpoint.Hit("container.create.after-row")
	log := s.log.With(slog.String(logkey.Container, row.ID), slog.String(logkey.Pod, sb.ID), slog.String(logkey.Runtime, sb.Handler))
	if err := s.setUpContainer(ctx, row, sb, sbCfg, cfg, img, log, t); err != nil {
		return nil, fmt.Errorf("create container %s in pod %s: %w", cfg.Metadata.Name, sb.ID, err)
	}
	t.log(ctx, log, "CreateContainer")
	log.Info("container created", slog.String("name", row.Name))
	return &runtimeapi.CreateContainerResponse{ContainerId: row.ID}, nil
}

func (s *Server) setUpContainer(ctx context.Context, row db.Container, sb db.Sandbox, sbCfg *runtimeapi.PodSandboxConfig,
	cfg *runtimeapi.ContainerConfig, img storage.Image, log *slog.Logger, t *steps) (retErr error) {
	rt, err := s.runtimeFor(sb.Handler)
	if err != nil {
		return err
	}
	var undo undoStack
	defer func() {
		if retErr != nil {
			undo.unwind(ctx, "CreateContainer", log, func(ctx context.Context) error { return s.store.DeleteContainer(ctx, row.ID) })
		}
	}()

	rootfs, err := s.images.CreateContainer(row.ID, img.ID, storage.Metadata{Kind: "container", SandboxID: sb.ID, Name: row.Name, Attempt: row.Attempt})
	if err != nil {
		return err
	}
	undo.push(func(context.Context) error { return s.images.RemoveContainer(row.ID) })
	failpoint.Hit("container.create.after-storage")
	t.done("storage")

	imageVolumes, err := s.mountImageVolumes(ctx, row, sb.ID, cfg, &undo)
	if err != nil {
		return err
	}
	t.done("image-volumes")

	p := s.pods.Lookup(sb.ID)
	infraPID, err := s.infraPID(ctx, rt, sb)
	if err != nil {
		return err
	}
	t.done("infra-pid")
	h := s.handler(sb.Handler)
	// Converting the resources once more costs only when the log shows it.
	if len(s.missing) > 0 && log.Enabled(ctx, slog.LevelDebug) {
		if dropped := ocispec.DroppedResources(cfg.GetLinux().GetResources(), s.missing); len(dropped) > 0 {
			log.Debug("resources dropped: the host lacks their cgroup controllers",
				slog.Any("dropped", dropped), slog.Any("missing_controllers", s.missing))
		}
	}
	spec, err := ocispec.ForContainer(ocispec.ContainerInput{
		ID: row.ID, Name: row.Name, Config: cfg, Image: img.Config, ImageRef: row.ImageRef,
		RootfsPath: rootfs.Mount, LogPath: row.LogPath, ClampOOMScoreAdj: s.clampOOM,
		HostCapabilities: s.hostCaps, HostDevices: s.hostDevices, Passthrough: h.Annotations,
		PrivilegedWithoutHostDevices: h.PrivilegedWithoutHostDevices, CgroupNamespace: s.cgroupNS, Missing: s.missing,
		ImageVolumes: imageVolumes,
		Sandbox: ocispec.Sandbox{
			ID: sb.ID, Handler: sb.Handler, RuntimeType: rt.Handler().Type, InfraID: sb.InfraID, InfraPID: infraPID,
			NetNSPath: sb.NetNSPath, IPCNSPath: p.IPCNS, UTSNSPath: p.UTSNS,
			ResolvConf: p.ResolvConf, Hosts: p.Hosts, HostnameFile: p.HostnameF, ShmPath: p.Shm,
			Privileged: sb.Privileged, Config: sbCfg,
		},
		Annotations: map[string]string{"io.crisp.container-name": row.Name},
	})
	if err != nil {
		return err
	}
	// The bundle lives under the run dir, where paths are short enough for
	// conmon's attach socket; a copy of the spec stays with the storage
	// record, from which a lost database is rebuilt.
	files := s.files.Container(row.ID)
	if err := os.MkdirAll(files.Bundle, 0o700); err != nil {
		return fmt.Errorf("create bundle dir: %w", err)
	}
	undo.push(func(context.Context) error { return oci.RemoveLeftovers(files) })
	if err := files.WriteSpec(spec, rootfs.Dir); err != nil {
		return err
	}
	failpoint.Hit("container.create.after-bundle")
	if row.LogPath != "" {
		if err := prepareLog(sb.LogDir, cfg.LogPath); err != nil {
			return err
		}
	}
	t.done("spec")
	if _, err := rt.Create(ctx, s.createOpts(row, cfg)); err != nil {
		return fmt.Errorf("create in runtime %s: %w", sb.Handler, err)
	}
	undo.push(func(ctx context.Context) error { return ignoreNotFound(rt.Delete(ctx, row.ID, true)) })
	t.done("runtime-create")
	failpoint.Hit("container.create.before-created")
	proc, err := s.resolvedProcess(spec.Process, cfg, img)
	if err != nil {
		return err
	}
	return s.store.MarkContainerCreated(ctx, row.ID, proc)
}

// resolvedProcess is what ContainerStatus reports of a container's process
// and StopContainer uses: the effective ids, the resources as applied, the
// stop signal.
func (s *Server) resolvedProcess(p *specs.Process, cfg *runtimeapi.ContainerConfig, img storage.Image) (db.Process, error) {
	user, err := encodeUser(p.User)
	if err != nil {
		return db.Process{}, err
	}
	res, err := encodeResources(ocispec.AppliedResources(cfg.GetLinux().GetResources(), s.clampOOM, s.missing))
	if err != nil {
		return db.Process{}, err
	}
	sig, err := ocispec.ContainerStopSignal(cfg, img.Config)
	if err != nil {
		return db.Process{}, err
	}
	return db.Process{RunUser: user, Resources: res, StopSignal: int(sig)}, nil
}

// createOpts says how the runtime creates a container under its monitor.
func (s *Server) createOpts(row db.Container, cfg *runtimeapi.ContainerConfig) oci.CreateOpts {
	logPath := row.LogPath
	if logPath == "" {
		logPath = s.files.Container(row.ID).ConsoleLog() // conmon needs one; kubelet did not ask for it
	}
	return oci.CreateOpts{
		ID: row.ID, LogPath: logPath, Terminal: cfg.Tty, Stdin: cfg.Stdin, StdinOnce: cfg.StdinOnce,
	}
}

// prepareLog makes the directories of a container's log, log_path beneath
// the pod's log directory, through os.Root: no symlink met on the way can
// lead out of the log directory, and the log file itself must not be a
// symlink or anything but a regular file, since conmon (root) opens it by
// name and appends to it.
func prepareLog(logDir, logPath string) error {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fmt.Errorf("create log directory %s: %w", logDir, err)
	}
	root, err := os.OpenRoot(logDir)
	if err != nil {
		return fmt.Errorf("open log directory %s: %w", logDir, err)
	}
	defer root.Close()
	if err := root.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return fmt.Errorf("log_path %q: %v: %w", logPath, err, ErrInvalid)
	}
	fi, err := root.Lstat(logPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("log_path %q: %v: %w", logPath, err, ErrInvalid)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("log_path %q exists and is not a regular file (%s): %w", logPath, fi.Mode().Type(), ErrInvalid)
	}
	return nil
}

// containerLogPath is the container's log file: log_path under the pod's
// log directory, never outside it.
func containerLogPath(logDir, logPath string) (string, error) {
	if logPath == "" {
		return "", nil
	}
	if logDir == "" {
		return "", fmt.Errorf("log_path %q given but the pod has no log_directory: %w", logPath, ErrInvalid)
	}
	full := filepath.Join(logDir, logPath)
	if !strings.HasPrefix(full, filepath.Clean(logDir)+string(filepath.Separator)) {
		return "", fmt.Errorf("log_path %q leaves the pod's log directory: %w", logPath, ErrInvalid)
	}
	return full, nil
}

// runtimeFor is the runtime of a handler recorded on a sandbox.
func (s *Server) runtimeFor(handler string) (Runtime, error) {
	h, ok := s.handlers[handler]
	rt := h.Runtime
	if !ok || rt == nil {
		return nil, fmt.Errorf("runtime handler %q is not configured any more: %w", handler, ErrPrecondition)
	}
	return rt, nil
}

func ignoreNotFound(err error) error {
	if errors.Is(err, oci.ErrNotFound) || errors.Is(err, storage.ErrNotFound) || errors.Is(err, db.ErrNotFound) {
		return nil
	}
	return err
}
