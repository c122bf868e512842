package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/failpoint"
	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// StopPodSandbox stops a pod: its containers, then its network. The pod
// stays listed, not ready, until RemovePodSandbox. Stopping a stopped or
// unknown pod succeeds, as the CRI asks.
func (s *Server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	sb, err := s.sandboxFor(ctx, req.GetPodSandboxId())
	if errors.Is(err, db.ErrNotFound) {
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	unlock := s.locks.lock(sb.ID)
	defer unlock()
	t := startSteps()
	if err := s.stopSandbox(ctx, sb, t); err != nil {
		return nil, fmt.Errorf("stop pod sandbox %s: %w", sb.ID, err)
	}
	t.log(ctx, s.log.With(slog.String(logkey.Pod, sb.ID)), "StopPodSandbox")
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// stopSandbox tears the pod's network down and marks it not ready; every
// step is idempotent, so a retry after a partial failure finishes the job.
func (s *Server) stopSandbox(ctx context.Context, sb db.Sandbox, t *steps) error {
	cs, err := s.store.ListContainers(ctx, db.ContainerFilter{SandboxID: sb.ID})
	if err != nil {
		return err
	}
	if len(cs) > 0 || sb.InfraID != "" {
		rt, err := s.runtimeFor(sb.Handler)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if err := s.stopContainer(ctx, c, rt, 0); err != nil {
				return fmt.Errorf("stop container %s: %w", c.ID, err)
			}
		}
		t.done("containers")
		if sb.InfraID != "" {
			if err := s.stopInfra(ctx, rt, sb.InfraID); err != nil {
				return err
			}
			t.done("infra")
		}
	}
	if err := s.stopInfraProcess(ctx, sb); err != nil {
		return err
	}
	failpoint.Hit("pod.stop.after-containers")
	// The pin goes last, so while it exists the network may still be set
	// up; once it is gone (a stopped pod), there is nothing to tear down.
	if sb.NetNSPath != "" && exists(sb.NetNSPath) {
		cfg, err := sandboxConfig(sb)
		if err != nil {
			return err
		}
		if err := s.net.Teardown(ctx, attachment(sb, sb.NetNSPath, cfg)); err != nil {
			return fmt.Errorf("tear down pod network: %w", err)
		}
		t.done("cni")
		failpoint.Hit("pod.stop.after-cni")
		if err := s.net.RemoveNetNS(sb.NetNSPath); err != nil {
			return fmt.Errorf("remove network namespace: %w", err)
		}
		t.done("netns")
	}
	err = s.store.SetSandboxState(ctx, sb.ID, db.SandboxNotReady, db.SandboxReady)
	if err != nil && !errors.Is(err, db.ErrWrongState) {
		return err
	}
	if sb.State == db.SandboxReady {
		s.log.Info("pod sandbox stopped", slog.String(logkey.Pod, sb.ID))
	}
	return nil
}

// RemovePodSandbox removes a pod and everything of it; the row goes last.
// Removing an unknown pod succeeds.
func (s *Server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	sb, err := s.sandboxFor(ctx, req.GetPodSandboxId())
	if errors.Is(err, db.ErrNotFound) {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	unlock := s.locks.lock(sb.ID)
	defer unlock()
	t := startSteps()
	if err := s.stopSandbox(ctx, sb, t); err != nil {
		return nil, fmt.Errorf("remove pod sandbox %s: %w", sb.ID, err)
	}
	t.done("stop")
	if err := s.store.SetSandboxState(ctx, sb.ID, db.SandboxRemoving, db.SandboxNotReady, db.SandboxRemoving); err != nil {
		return nil, fmt.Errorf("remove pod sandbox %s: %w", sb.ID, err)
	}
	failpoint.Hit("pod.remove.after-state")
	cs, err := s.store.ListContainers(ctx, db.ContainerFilter{SandboxID: sb.ID})
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		rt, err := s.runtimeFor(sb.Handler)
		if err != nil {
			return nil, err
		}
		if err := s.removeContainer(ctx, c, rt, nil); err != nil {
			return nil, fmt.Errorf("remove pod sandbox %s: container %s: %w", sb.ID, c.ID, err)
		}
	}
	failpoint.Hit("pod.remove.after-containers")
	if sb.InfraID != "" {
		rt, err := s.runtimeFor(sb.Handler)
		if err != nil {
			return nil, err
		}
		if err := s.deleteInfra(ctx, rt, sb.InfraID); err != nil {
			return nil, fmt.Errorf("remove pod sandbox %s: %w", sb.ID, err)
		}
		t.done("delete-infra")
	}
	if err := s.pods.Remove(sb.ID); err != nil {
		return nil, fmt.Errorf("remove pod sandbox %s: %w", sb.ID, err)
	}
	t.done("pod-dir")
	failpoint.Hit("pod.remove.before-row")
	if err := s.store.DeleteSandbox(ctx, sb.ID); err != nil && !errors.Is(err, db.ErrNotFound) {
		return nil, fmt.Errorf("remove pod sandbox %s: %w", sb.ID, err)
	}
	t.log(ctx, s.log.With(slog.String(logkey.Pod, sb.ID)), "RemovePodSandbox")
	s.log.Info("pod sandbox removed", slog.String(logkey.Pod, sb.ID))
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

// sandboxFor resolves a (possibly truncated) sandbox id to its row.
func (s *Server) sandboxFor(ctx context.Context, id string) (db.Sandbox, error) {
	if id == "" {
		return db.Sandbox{}, fmt.Errorf("pod sandbox id is empty: %w", ErrInvalid)
	}
	full, err := s.store.ResolveSandboxID(ctx, id)
	if err != nil {
		return db.Sandbox{}, err
	}
	return s.store.Sandbox(ctx, full)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
