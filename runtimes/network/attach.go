package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// Errors wrapped by Setup and Check.
var (
	// ErrAlreadyAttached: Setup found the pod's ADD in libcni's cache;
	// Teardown first.
	ErrAlreadyAttached = errors.New("pod already attached")
	// ErrNotAttached: Check found no ADD for the pod in libcni's cache.
	ErrNotAttached = errors.New("pod not attached")
)

// cleanupTimeout bounds the DEL that undoes a failed Setup, which runs even
// when the caller's context is already done.
const cleanupTimeout = 30 * time.Second

// podIfName is the pod's interface on the CNI network.
const podIfName = "eth0"

// Attachment names one pod's attachment to the network. PodID is the CNI
// container id (the pod sandbox id); the same values must be given to
// Setup, Check and Teardown.
type Attachment struct {
	PodID     string
	Name      string // Kubernetes pod name
	Namespace string // Kubernetes namespace
	UID       string // Kubernetes pod UID
	// NetNS is the pinned namespace path from NewNetNS. Teardown accepts a
	// path that no longer exists, or an empty one.
	NetNS        string
	PortMappings []PortMapping
}

// PortMapping is one hostPort mapping, passed to plugins with the
// portMappings capability (portmap) in the CNI convention's JSON form.
// Mappings whose HostPort is 0 are not host ports and are left out.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`         // "tcp" (when empty), "udp" or "sctp"
	HostIP        string `json:"hostIP,omitempty"` // empty: every host address
}

// Setup attaches the pod to the current network: CNI ADD of its conflist
// with CNI_ARGS IgnoreUnknown=1, K8S_POD_NAMESPACE, K8S_POD_NAME,
// K8S_POD_INFRA_CONTAINER_ID and K8S_POD_UID, and the portMappings
// capability. It returns the pod's IPs, IPv4 first. If ADD fails, Setup runs
// DEL (on a fresh context when ctx is done) so that no address, veth or
// port mapping is left, and returns the ADD error joined with any DEL
// error. A pod still attached (its ADD is in libcni's cache, on any
// network) is refused with an error wrapping ErrAlreadyAttached, and
// without a network with one wrapping ErrNoNetwork; nothing is run then.
// Safe for concurrent use on different pods.
func (m *Manager) Setup(ctx context.Context, a Attachment) (ips []string, retErr error) {
	if a.NetNS == "" {
		return nil, fmt.Errorf("cni add %s: no netns path", a.PodID)
	}
	rt, err := m.runtimeConf(a)
	if err != nil {
		return nil, fmt.Errorf("cni add %s: %w", a.PodID, err)
	}
	n := m.cur.Load()
	if n == nil {
		return nil, fmt.Errorf("cni add %s: %w", a.PodID, m.noNetwork())
	}
	// A second ADD would fail, and its undo would tear down the first.
	prev, err := m.attachments(a.PodID)
	if err != nil {
		return nil, fmt.Errorf("cni add %s: read cache (Teardown clears it): %w", a.PodID, err)
	}
	if len(prev) > 0 {
		return nil, fmt.Errorf("cni add %s: on network %q: %w", a.PodID, prev[0].list.Name, ErrAlreadyAttached)
	}
	log := m.log.With(slog.String(logkey.Pod, a.PodID), slog.String("network", n.list.Name))
	start := time.Now()
	defer func() {
		if retErr == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if err := m.cni.DelNetworkList(cctx, n.list, rt); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("undo cni add %s: %w", a.PodID, err))
		}
	}()
	res, err := m.cni.AddNetworkList(ctx, n.list, rt)
	if err != nil {
		return nil, fmt.Errorf("cni add %s to network %q: %w", a.PodID, n.list.Name, err)
	}
	ips, err = resultIPs(res)
	if err != nil {
		return nil, fmt.Errorf("cni add %s: %w", a.PodID, err)
	}
	log.Info("pod network attached", slog.Any("ips", ips), slog.Duration(logkey.Took, time.Since(start)))
	return ips, nil
}

// attachment is a pod's ADD as libcni cached it: the conflist it ran and
// the capability arguments (port mappings) it was given.
type attachment struct {
	list *libcni.NetworkConfigList
	caps map[string]any
}

// runtimeConf is rt for a run of att's conflist: with the port mappings
// of the ADD when the caller (a restarted crispd, the reconciler) no longer
// knows them.
func (att attachment) runtimeConf(rt *libcni.RuntimeConf, a Attachment) *libcni.RuntimeConf {
	out := *rt
	if att.caps != nil && len(a.PortMappings) == 0 {
		out.CapabilityArgs = att.caps
	}
	return &out
}

// attachments returns the pod's cached ADDs of its interface, whatever
// the network. A cache entry that does not parse is an error, since DEL
// could not run what it names.
func (m *Manager) attachments(podID string) ([]attachment, error) {
	cached, err := m.cni.GetCachedAttachments(podID)
	if err != nil {
		return nil, err
	}
	var out []attachment
	for _, c := range cached {
		if c.IfName != podIfName {
			continue
		}
		list, err := parseConfList(c.Config)
		if err != nil {
			return nil, fmt.Errorf("cached attachment to network %q: %w", c.Network, err)
		}
		out = append(out, attachment{list: list, caps: c.CapabilityArgs})
	}
	return out, nil
}

// Teardown detaches the pod: CNI DEL, which releases the address, removes
// the veth and the port mappings. It works when the netns is already gone
// (after RemoveNetNS or a reboot) and when the pod was never attached, so it
// is idempotent. When libcni's cache holds the pod's ADD, DEL runs the
// conflist and port mappings recorded there, on the network the pod was
// attached to, so a changed config directory or a caller that no longer
// knows the mappings (portmap's DEL does nothing without them) still
// removes everything; without a cache entry it runs the current network's.
// Safe for concurrent use on different pods.
func (m *Manager) Teardown(ctx context.Context, a Attachment) error {
	// A pin that no longer holds a namespace (unmounted by a reboot or by
	// hand) is refused by the plugins ("unknown FS magic"), on every try:
	// DEL without a netns still releases the IPs, and the interfaces went
	// with the namespace.
	if a.NetNS != "" && isStalePin(a.NetNS) {
		a.NetNS = ""
	}
	rt, err := m.runtimeConf(a)
	if err != nil {
		return fmt.Errorf("cni del %s: %w", a.PodID, err)
	}
	atts, err := m.attachments(a.PodID)
	if err != nil {
		m.log.Warn("cni cache unreadable, deleting with the current config",
			slog.String(logkey.Pod, a.PodID), slog.Any(logkey.Err, err))
	}
	if len(atts) == 0 {
		n := m.cur.Load()
		if n == nil {
			return nil // no record of an ADD, and no network it could have been on
		}
		atts = []attachment{{list: n.list}}
	}
	start := time.Now()
	for _, att := range atts {
		if err := m.cni.DelNetworkList(ctx, att.list, att.runtimeConf(rt, a)); err != nil {
			return fmt.Errorf("cni del %s from network %q: %w", a.PodID, att.list.Name, err)
		}
		m.log.Info("pod network detached", slog.String(logkey.Pod, a.PodID), slog.String("network", att.list.Name),
			slog.Duration(logkey.Took, time.Since(start)))
	}
	return nil
}

// Check runs CNI CHECK for the pod on the network it was attached to: each
// plugin verifies that what its ADD made is still in place (the interface
// and its address in the netns, the bridge, the port mappings). It returns
// the first plugin's complaint, or an error wrapping ErrNotAttached when
// libcni's cache holds no ADD for the pod (never set up, or torn down).
// Port mappings come from the cache when a has none. Safe for concurrent
// use on different pods.
func (m *Manager) Check(ctx context.Context, a Attachment) error {
	if a.NetNS == "" {
		return fmt.Errorf("cni check %s: no netns path", a.PodID)
	}
	rt, err := m.runtimeConf(a)
	if err != nil {
		return fmt.Errorf("cni check %s: %w", a.PodID, err)
	}
	atts, err := m.attachments(a.PodID)
	if err != nil {
		return fmt.Errorf("cni check %s: %w", a.PodID, err)
	}
	if len(atts) == 0 {
		return fmt.Errorf("cni check %s: %w", a.PodID, ErrNotAttached)
	}
	for _, att := range atts {
		if err := m.cni.CheckNetworkList(ctx, att.list, att.runtimeConf(rt, a)); err != nil {
			return fmt.Errorf("cni check %s on network %q: %w", a.PodID, att.list.Name, err)
		}
	}
	return nil
}

// runtimeConf builds the per-pod arguments shared by ADD, CHECK and DEL.
func (m *Manager) runtimeConf(a Attachment) (*libcni.RuntimeConf, error) {
	if err := checkID(a.PodID); err != nil {
		return nil, err
	}
	rt := &libcni.RuntimeConf{
		ContainerID: a.PodID,
		NetNS:       a.NetNS,
		IfName:      podIfName,
		Args: [][2]string{
			// The bridge plugin rejects CNI_ARGS it does not know otherwise.
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", a.Namespace},
			{"K8S_POD_NAME", a.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", a.PodID},
			{"K8S_POD_UID", a.UID},
		},
	}
	pms, err := hostPorts(a.PortMappings)
	if err != nil {
		return nil, err
	}
	if len(pms) > 0 {
		rt.CapabilityArgs = map[string]any{"portMappings": pms}
	}
	return rt, nil
}

// hostPorts keeps the mappings that are host ports, with the protocol in
// the lower case that portmap expects.
func hostPorts(in []PortMapping) ([]PortMapping, error) {
	var out []PortMapping
	for _, pm := range in {
		if pm.HostPort == 0 {
			continue
		}
		pm.Protocol = strings.ToLower(pm.Protocol)
		if pm.Protocol == "" {
			pm.Protocol = "tcp"
		}
		switch {
		case pm.Protocol != "tcp" && pm.Protocol != "udp" && pm.Protocol != "sctp":
			return nil, fmt.Errorf("port mapping %d: unknown protocol %q", pm.HostPort, pm.Protocol)
		case pm.HostPort < 0 || pm.HostPort > 65535 || pm.ContainerPort <= 0 || pm.ContainerPort > 65535:
			return nil, fmt.Errorf("port mapping %d→%d: port out of range", pm.HostPort, pm.ContainerPort)
		}
		out = append(out, pm)
	}
	return out, nil
}

// resultIPs returns the addresses of a CNI result, IPv4 first.
func resultIPs(res types.Result) ([]string, error) {
	cur, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("read result: %w", err)
	}
	var v4, v6 []string
	for _, ipc := range cur.IPs {
		if ipc.Address.IP.To4() != nil {
			v4 = append(v4, ipc.Address.IP.String())
		} else {
			v6 = append(v6, ipc.Address.IP.String())
		}
	}
	return append(v4, v6...), nil
}
