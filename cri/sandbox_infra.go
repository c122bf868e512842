package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/failpoint"
	"github.com/crisp-cri/crisp/cri/ocispec"
	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/host"
	"github.com/crisp-cri/crisp/runtimes/logkey"
	"github.com/crisp-cri/crisp/runtimes/oci"
	"github.com/crisp-cri/crisp/runtimes/pod"
)

// A pod needs an infra when its containers share a PID namespace (which
// needs a PID 1) and under runsc, where the pod's gVisor sandbox is the
// infra. On runc the infra is a bare process (startInfraProcess); under
// runsc it is a container (startInfra), whose id is the pod's.

// startInfraProcess starts a runc pod's infra process in the pod's
// namespaces and cgroup (see pod.StartInfra). It returns the undo of what
// it did.
func (s *Server) startInfraProcess(row db.Sandbox, cfg *runtimeapi.PodSandboxConfig, netns string, log *slog.Logger) (func(context.Context) error, error) {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("nsenter (util-linux) is needed for pods that share a PID namespace: %w", err)
	}
	cgroup, err := ocispec.CgroupsPath(cfg.GetLinux().GetCgroupParent(), row.ID)
	if err != nil {
		return nil, err
	}
	p := s.pods.Lookup(row.ID)
	undo := func(ctx context.Context) error { return s.pods.StopInfra(ctx, row.ID) }
	_, err = s.pods.StartInfra(row.ID, pod.InfraOptions{
		Exe: s.crispdPath, NSEnter: nsenter, NetNS: netns, IPCNS: p.IPCNS, UTSNS: p.UTSNS, Cgroup: cgroup,
		Place: func(pid int, cgroup string) error {
			if err := host.MoveToCgroup(pid, cgroup); err != nil {
				log.Warn("infra process stays in crisp's cgroup", slog.String("cgroup", cgroup), slog.Any(logkey.Err, err))
			}
			return nil
		},
	})
	if err != nil {
		return undo, err
	}
	return undo, nil
}

// stopInfraProcess kills a runc pod's infra process, if it has one, and
// removes the cgroup it was placed in.
func (s *Server) stopInfraProcess(ctx context.Context, sb db.Sandbox) error {
	return s.pods.StopInfra(ctx, sb.ID)
}

// startInfra runs a pod's infra container, `crispd pause` from an empty
// read-only rootfs (no image to pull), under the pod's handler. Its id is
// the pod's id: under runsc it is the gVisor sandbox the pod's containers
// join. It returns the undo of what it did.
func (s *Server) startInfra(ctx context.Context, row db.Sandbox, cfg *runtimeapi.PodSandboxConfig, netns string) (func(context.Context) error, error) {
	rt, err := s.runtimeFor(row.Handler)
	if err != nil {
		return nil, err
	}
	files := s.files.Container(row.ID)
	rootfs := files.Rootfs()
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return nil, fmt.Errorf("create infra rootfs: %w", err)
	}
	undo := func(ctx context.Context) error { return s.deleteInfra(ctx, rt, row.ID) }
	p := s.pods.Lookup(row.ID)
	spec, err := ocispec.ForSandboxInfra(ocispec.InfraInput{
		Sandbox: ocispec.Sandbox{
			ID: row.ID, Handler: row.Handler, RuntimeType: rt.Handler().Type, InfraID: row.ID, NetNSPath: netns,
			IPCNSPath: p.IPCNS, UTSNSPath: p.UTSNS, ResolvConf: p.ResolvConf, Hosts: p.Hosts, HostnameFile: p.HostnameF,
			ShmPath: p.Shm, Privileged: row.Privileged, Config: cfg,
		},
		RootfsPath: rootfs, CrispdPath: s.crispdPath, ClampOOMScoreAdj: s.clampOOM,
		Passthrough: s.handler(row.Handler).Annotations,
	})
	if err != nil {
		return undo, err
	}
	if err := files.WriteSpec(spec); err != nil {
		return undo, err
	}
	if _, err := rt.Create(ctx, oci.CreateOpts{ID: row.ID, LogPath: files.InfraLog()}); err != nil {
		return undo, fmt.Errorf("create infra container in runtime %s: %w", row.Handler, err)
	}
	failpoint.Hit("pod.infra.after-create")
	if err := rt.Start(ctx, row.ID); err != nil {
		return undo, fmt.Errorf("start infra container: %w", err)
	}
	return undo, nil
}

// stopInfra kills a pod's infra container and waits for it to stop.
func (s *Server) stopInfra(ctx context.Context, rt Runtime, id string) error {
	if err := rt.Kill(ctx, id, syscall.SIGKILL, true); err != nil && !errors.Is(err, oci.ErrNotRunning) && !errors.Is(err, oci.ErrNotFound) {
		return fmt.Errorf("kill infra container: %w", err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(30 * time.Second); ; {
		st, err := rt.State(ctx, id)
		if errors.Is(err, oci.ErrNotFound) || err == nil && st.Status == "stopped" {
			return nil
		}
		// A runtime error may pass as the sandbox goes down: look again,
		// and say what it was if it does not.
		still := st.Status
		if err != nil {
			still = fmt.Sprintf("unknown (%v)", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("infra container %s still %s 30s after SIGKILL", id, still)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("infra container %s still %s after SIGKILL: %w", id, still, ctx.Err())
		}
	}
}

// deleteInfra stops and deletes a pod's infra container and removes its
// files; a missing one is no error.
func (s *Server) deleteInfra(ctx context.Context, rt Runtime, id string) error {
	if err := s.stopInfra(ctx, rt, id); err != nil {
		return err
	}
	if err := ignoreNotFound(rt.Delete(ctx, id, true)); err != nil {
		return fmt.Errorf("delete infra container: %w", err)
	}
	return oci.RemoveLeftovers(s.files.Container(id))
}

// infraPID is the pid of a pod's running infra, 0 without one.
func (s *Server) infraPID(ctx context.Context, rt Runtime, sb db.Sandbox) (int, error) {
	if sb.InfraID == "" {
		inf, err := s.pods.LookupInfra(sb.ID)
		switch {
		case errors.Is(err, pod.ErrNoInfra):
			return 0, nil
		case errors.Is(err, pod.ErrInfraExited):
			return 0, fmt.Errorf("infra of pod %s: %w: %w", sb.ID, err, ErrPrecondition)
		}
		return inf.PID, err
	}
	st, err := rt.State(ctx, sb.InfraID)
	if err != nil {
		return 0, fmt.Errorf("infra of pod %s: %w", sb.ID, err)
	}
	if st.Status != "running" {
		return 0, fmt.Errorf("infra of pod %s is %s: %w", sb.ID, st.Status, ErrPrecondition)
	}
	return st.PID, nil
}

// hasInfraContainer tells the pods that have an infra container (InfraID =
// the pod's id): gVisor pods, whose sandbox it is. A runc pod's infra,
// when it has one, is a bare process recorded in its pod dir.
func (s *Server) hasInfraContainer(handler string) bool {
	h := s.handler(handler)
	return h.Runtime != nil && h.Runtime.Handler().Type == oci.TypeRunsc
}
