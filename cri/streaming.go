package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/ocispec"
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

// PortForward answers with the URL of a port-forward session to a ready
// pod's ports (see routePortForward).
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
	return stream.ExecTarget{RuntimePath: rt.Handler().Path, GlobalArgs: rt.GlobalArgs(), ContainerID: c.ID, Process: proc,
		TTYArgs: rt.ExecTTYArgs()}, nil
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
	files := t.s.files.Container(c.ID)
	return stream.AttachTarget{Socket: files.AttachSocket(), CtlFifo: files.CtlFifo(),
		Tty: cfg.Tty, Stdin: cfg.Stdin, StdinOnce: cfg.StdinOnce}, nil
}

// PortForwardTarget implements stream.Containers.
func (t StreamTargets) PortForwardTarget(ctx context.Context, podID string) (stream.PortForwardTarget, error) {
	sb, err := t.s.sandboxFor(ctx, podID)
	if err != nil {
		return stream.PortForwardTarget{}, err
	}
	rt, err := t.s.runtimeFor(sb.Handler)
	if err != nil {
		return stream.PortForwardTarget{}, err
	}
	route, err := routePortForward(sb, rt.Netstack())
	if err != nil || route.bridgeIn == "" {
		return stream.PortForwardTarget{NetNS: route.netns}, err
	}
	// The bridge runs as the infra process does: its user, no
	// capabilities, its seccomp profile.
	proc, err := t.s.containerProcess(route.bridgeIn)
	if err != nil {
		return stream.PortForwardTarget{}, fmt.Errorf("port forward to pod %s: %w", sb.ID, err)
	}
	proc.Args = []string{ocispec.InfraCrispd, "port-forward-stdio"}
	return stream.PortForwardTarget{Bridge: &stream.ExecTarget{RuntimePath: rt.Handler().Path, GlobalArgs: rt.GlobalArgs(),
		ContainerID: route.bridgeIn, Process: proc}}, nil
}

// forwardRoute is how port-forward reaches a pod's ports: one field is set.
type forwardRoute struct {
	netns    string // dial localhost:port in this network namespace
	bridgeIn string // run crispd's port-forward bridge in this container
}

// routePortForward decides how port-forward reaches pod sb. Where the host
// kernel serves the pod's network (runc pods, gVisor pods in host mode),
// crispd dials inside the pod's network namespace. A gVisor pod on
// gVisor's netstack (netstack: its handler's network is sandbox) has its
// addresses, loopback included, inside the sandbox, where no host socket
// reaches: the bridge runs in its infra container, which holds crispd.
func routePortForward(sb db.Sandbox, netstack bool) (forwardRoute, error) {
	switch {
	case netstack && sb.InfraID == "":
		return forwardRoute{}, fmt.Errorf("port forward to pod %s: it runs on gVisor's netstack but has no infra container to bridge through: %w", sb.ID, ErrPrecondition)
	case netstack:
		return forwardRoute{bridgeIn: sb.InfraID}, nil
	case sb.NetNSPath == "":
		return forwardRoute{netns: "/proc/self/ns/net"}, nil // a host-network pod: crispd's own, the host's
	default:
		return forwardRoute{netns: sb.NetNSPath}, nil
	}
}
