package cri

import (
	"context"
	"fmt"
	"path/filepath"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/stream"
	"github.com/crisp-cri/crisp/db"
)

// Exec answers with the URL of a streaming exec session on the streaming
// server (loopback only), for a running container.
func (s *Server) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if _, err := s.runningContainer(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	if len(req.GetCmd()) == 0 {
		return nil, fmt.Errorf("exec: cmd is empty: %w", ErrInvalid)
	}
	return s.streams.GetExec(req)
}

// Attach answers with the URL of a streaming attach session.
func (s *Server) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if _, err := s.runningContainer(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return s.streams.GetAttach(req)
}

// PortForward answers with the URL of a port-forward session into a ready
// pod's network namespace.
func (s *Server) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	sb, err := s.sandboxFor(ctx, req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if sb.State != db.SandboxReady {
		return nil, fmt.Errorf("port forward into pod %s: it is %s, not ready: %w", sb.ID, sb.State, ErrPrecondition)
	}
	return s.streams.GetPortForward(req)
}

func (s *Server) runningContainer(ctx context.Context, id string) (db.Container, error) {
	c, err := s.containerFor(ctx, id)
	if err != nil {
		return db.Container{}, err
	}
	if c.State != db.ContainerRunning {
		return db.Container{}, fmt.Errorf("container %s is %s, not running: %w", c.ID, c.State, ErrPrecondition)
	}
	return c, nil
}

// StreamTargets is what the streaming server needs of crisp: how to reach
// a container's runtime, monitor and pod network.
type StreamTargets struct{ s *Server }

// StreamTargets returns the streaming server's view of this server.
func (s *Server) StreamTargets() StreamTargets { return StreamTargets{s} }

// SetStreams sets the streaming server, which is made after the Server
// because it needs StreamTargets.
func (s *Server) SetStreams(st *stream.Server) { s.streams = st }

// ExecTarget implements stream.Containers.
func (t StreamTargets) ExecTarget(ctx context.Context, id string) (stream.ExecTarget, error) {
	c, rt, err := t.s.containerAndRuntime(ctx, id)
	if err != nil {
		return stream.ExecTarget{}, err
	}
	proc, err := t.s.containerProcess(c.ID)
	if err != nil {
		return stream.ExecTarget{}, err
	}
	h := rt.Handler()
	return stream.ExecTarget{RuntimePath: h.Path, GlobalArgs: append([]string{"--root=" + h.Root}, h.ExtraArgs...),
		ContainerID: c.ID, Process: proc}, nil
}

// AttachTarget implements stream.Containers.
func (t StreamTargets) AttachTarget(ctx context.Context, id string) (stream.AttachTarget, error) {
	c, err := t.s.containerFor(ctx, id)
	if err != nil {
		return stream.AttachTarget{}, err
	}
	cfg, err := containerConfig(c)
	if err != nil {
		return stream.AttachTarget{}, err
	}
	bundle := filepath.Join(t.s.bundleDir, c.ID)
	return stream.AttachTarget{Socket: filepath.Join(bundle, "attach"), CtlFifo: filepath.Join(bundle, "ctl"),
		Tty: cfg.Tty, Stdin: cfg.Stdin, StdinOnce: cfg.StdinOnce}, nil
}

// NetNS implements stream.Containers.
func (t StreamTargets) NetNS(ctx context.Context, podID string) (string, error) {
	sb, err := t.s.sandboxFor(ctx, podID)
	if err != nil {
		return "", err
	}
	if sb.NetNSPath == "" {
		return "/proc/self/ns/net", nil // a host-network pod: crispd's own, the host's
	}
	return sb.NetNSPath, nil
}
