package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/failpoint"
	"github.com/crisp-cri/crisp/cri/ocispec"
	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/logkey"
	"github.com/crisp-cri/crisp/runtimes/network"
	"github.com/crisp-cri/crisp/runtimes/pod"
	"github.com/crisp-cri/crisp/runtimes/trust"
)

// cleanupTimeout bounds undo work done after a request failed or was
// cancelled, on a context of its own.
const cleanupTimeout = time.Minute

// RunPodSandbox creates a pod: the row first (state creating, name
// reserved), then the pod dir and namespaces, the network, and last the
// row's ready state. A failure undoes the steps done, in reverse. kubelet's
// retry of a call that timed out gets the first call's sandbox; if that
// call fails meanwhile, the retry makes the sandbox itself.
func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	cfg := req.GetConfig()
	t := startSteps()
	m := cfg.Metadata
	decision, err := trust.Decide(podTrustView(cfg), req.GetRuntimeHandler(), s.trust)
	if err != nil {
		return nil, fmt.Errorf("run pod sandbox %s/%s: %w", m.Namespace, m.Name, err)
	}
	if err := checkPodNamespaces(cfg, decision.Handler, s.handlers[decision.Handler].Runtime); err != nil {
		return nil, err
	}
	// Refused before anything is made: kubelet retries once NetworkReady.
	if !hostNetwork(cfg) {
		if err := s.net.Status(); errors.Is(err, network.ErrNoNetwork) {
			return nil, fmt.Errorf("run pod sandbox %s/%s: %w: %w", m.Namespace, m.Name, err, ErrPrecondition)
		}
	}
	blob, hash, err := configHash(cfg, decision.Handler)
	if err != nil {
		return nil, err
	}
	row := db.Sandbox{
		ID: db.NewID(), Name: sandboxName(m), KubeName: m.Name, KubeNamespace: m.Namespace, KubeUID: m.Uid,
		Attempt: m.Attempt, Handler: decision.Handler, Trust: string(decision.Class), TrustReason: string(decision.Reason),
		Privileged: cfg.GetLinux().GetSecurityContext().GetPrivileged(), LogDir: cfg.LogDirectory,
		Labels: cfg.Labels, Annotations: cfg.Annotations, Config: blob, ConfigHash: hash,
	}
	for {
		got, created, err := s.store.CreateSandbox(ctx, row)
		if err != nil {
			return nil, fmt.Errorf("run pod sandbox %s/%s: %w", m.Namespace, m.Name, err)
		}
		if created {
			break
		}
		resp, err := s.joinSandbox(ctx, got.ID)
		if !errors.Is(err, db.ErrNotFound) {
			return resp, err
		}
		// The call it joined failed and undid itself: this one tries.
	}
	failpoint.Hit("pod.run.after-row")
	t.done("row")
	log := s.log.With(slog.String(logkey.Pod, row.ID), slog.String("name", row.Name), slog.String(logkey.Runtime, row.Handler))
	if err := s.setUpSandbox(ctx, row, cfg, log, t); err != nil {
		return nil, fmt.Errorf("run pod sandbox %s/%s: %w", m.Namespace, m.Name, err)
	}
	t.log(ctx, log, "RunPodSandbox")
	log.Info("pod sandbox ready", slog.String(logkey.Reason, row.TrustReason))
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: row.ID}, nil
}

// joinSandbox answers a retry: it waits for the first call's sandbox to
// leave creating and returns it if it became ready.
func (s *Server) joinSandbox(ctx context.Context, id string) (*runtimeapi.RunPodSandboxResponse, error) {
	sb, err := s.store.WaitSandbox(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("run pod sandbox: waiting for the same request in flight (%s): %w", id, err)
	}
	if sb.State != db.SandboxReady {
		return nil, fmt.Errorf("run pod sandbox: the same request created %s, which is now %s: %w", id, sb.State, ErrPrecondition)
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// setUpSandbox does RunPodSandbox's side effects for the row in state
// creating. On failure it undoes them on a fresh context and deletes the
// row; if that cleanup fails, the row stays for the reconciler.
func (s *Server) setUpSandbox(ctx context.Context, row db.Sandbox, cfg *runtimeapi.PodSandboxConfig, log *slog.Logger, t *steps) (retErr error) {
	var undo undoStack
	defer func() {
		if retErr != nil {
			undo.unwind(ctx, "RunPodSandbox", log, func(ctx context.Context) error { return s.store.DeleteSandbox(ctx, row.ID) })
		}
	}()

	ns := nsOptions(cfg)
	hostNet := ns.Network == runtimeapi.NamespaceMode_NODE
	_, err := s.pods.Create(pod.Options{
		ID: row.ID, Hostname: cfg.Hostname, DNS: dnsOf(cfg), HostIPC: ns.Ipc == runtimeapi.NamespaceMode_NODE, HostUTS: hostNet,
	})
	if err != nil {
		return fmt.Errorf("prepare pod dir: %w", err)
	}
	undo.push(func(context.Context) error { return s.pods.Remove(row.ID) })
	infra := s.hasInfraContainer(row.Handler)
	if err := s.writePodRecord(row, cfg, infra); err != nil {
		return err
	}
	failpoint.Hit("pod.run.after-pod-dir")
	t.done("pod-dir")

	ready := db.Ready{}
	if !hostNet {
		if ready.NetNSPath, err = s.net.NewNetNS(row.ID); err != nil {
			return fmt.Errorf("create network namespace: %w", err)
		}
		undo.push(func(context.Context) error { return s.net.RemoveNetNS(ready.NetNSPath) })
		failpoint.Hit("pod.run.after-netns")
		t.done("netns")
		att := attachment(row, ready.NetNSPath, cfg)
		if ready.IPs, err = s.net.Setup(ctx, att); err != nil {
			return fmt.Errorf("set up pod network: %w", err)
		}
		undo.push(func(ctx context.Context) error { return s.net.Teardown(ctx, att) })
		failpoint.Hit("pod.run.after-cni")
		t.done("cni")
	}
	// A gVisor pod's infra container sets them; crisp sets them for the
	// namespaces it made itself.
	if !infra {
		sysctls, err := ocispec.PodSysctls(cfg)
		if err != nil {
			return err
		}
		if err := s.pods.SetSysctls(ready.NetNSPath, s.pods.Lookup(row.ID).IPCNS, sysctls); err != nil {
			return fmt.Errorf("pod sysctls: %w", err)
		}
	}
	switch {
	case infra:
		undoInfra, err := s.startInfra(ctx, row, cfg, ready.NetNSPath)
		if undoInfra != nil {
			undo.push(undoInfra)
		}
		if err != nil {
			return fmt.Errorf("infra container: %w", err)
		}
		failpoint.Hit("pod.run.after-infra")
		ready.InfraID = row.ID
		t.done("infra")
	case nsOptions(cfg).Pid == runtimeapi.NamespaceMode_POD:
		undoInfra, err := s.startInfraProcess(row, cfg, ready.NetNSPath, log)
		if undoInfra != nil {
			undo.push(undoInfra)
		}
		if err != nil {
			return fmt.Errorf("infra process: %w", err)
		}
		failpoint.Hit("pod.run.after-infra")
		t.done("infra")
	}
	failpoint.Hit("pod.run.before-ready")
	if err := s.store.MarkSandboxReady(ctx, row.ID, ready); err != nil {
		return fmt.Errorf("record sandbox ready: %w", err)
	}
	return nil
}

// attachment is the CNI view of a sandbox.
func attachment(row db.Sandbox, netns string, cfg *runtimeapi.PodSandboxConfig) network.Attachment {
	a := network.Attachment{PodID: row.ID, Name: row.KubeName, Namespace: row.KubeNamespace, UID: row.KubeUID, NetNS: netns}
	for _, pm := range cfg.GetPortMappings() {
		proto := "tcp"
		switch pm.Protocol {
		case runtimeapi.Protocol_UDP:
			proto = "udp"
		case runtimeapi.Protocol_SCTP:
			proto = "sctp"
		}
		if pm.HostPort == 0 {
			continue // not published on the host
		}
		a.PortMappings = append(a.PortMappings, network.PortMapping{HostPort: pm.HostPort, ContainerPort: pm.ContainerPort, Protocol: proto, HostIP: pm.HostIp})
	}
	return a
}

func dnsOf(cfg *runtimeapi.PodSandboxConfig) *pod.DNS {
	d := cfg.GetDnsConfig()
	if d == nil {
		return nil
	}
	return &pod.DNS{Servers: d.Servers, Searches: d.Searches, Options: d.Options}
}

// podTrustView is what the trust policy looks at in a pod config.
func podTrustView(cfg *runtimeapi.PodSandboxConfig) trust.Pod {
	ns := nsOptions(cfg)
	return trust.Pod{
		Privileged:  cfg.GetLinux().GetSecurityContext().GetPrivileged(),
		HostNetwork: ns.Network == runtimeapi.NamespaceMode_NODE,
		HostPID:     ns.Pid == runtimeapi.NamespaceMode_NODE,
		HostIPC:     ns.Ipc == runtimeapi.NamespaceMode_NODE,
		Annotations: cfg.Annotations,
	}
}

// handler is a configured handler by name; the zero Handler if there is
// none (any more).
func (s *Server) handler(name string) Handler { return s.handlers[name] }
