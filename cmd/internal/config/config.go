// Package config is crispd's configuration: one TOML file over embedded
// defaults, then flags. crispctl reads the same file to find the daemon's
// sockets and database.
package config

import (
	_ "embed"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/crisp-cri/crisp/runtimes/network"
)

//go:embed defaults.toml
var defaults string

// DefaultPath is where crispd and crispctl look for a config file when
// --config is not given; a missing file there means the defaults.
const DefaultPath = "/etc/crisp/crisp.toml"

// Config is crispd's effective configuration. The help tags are printed
// by `crispd config`.
type Config struct {
	RunDir       string   `toml:"run_dir" help:"Runtime state that a reboot clears: sockets, runtime roots."`
	StateDir     string   `toml:"state_dir" help:"Persistent state: the database, storage."`
	Socket       string   `toml:"socket" help:"CRI socket (mode 0660) that kubelet and crictl use."`
	AdminSocket  string   `toml:"admin_socket" help:"Admin socket (mode 0600, root only) for crispctl."`
	Database     string   `toml:"database" help:"SQLite database of node state."`
	LogLevel     string   `toml:"log_level" help:"debug, info, warn or error."`
	LogFormat    string   `toml:"log_format" help:"auto (colour text on a terminal, JSON otherwise), text or json."`
	PauseImage   string   `toml:"pause_image" help:"Image for the infra process of pods that need one (shared PID namespace, gVisor). Empty means crispd's built-in infra: a read-only rootfs holding crispd itself, nothing to pull."`
	PinnedImages []string `toml:"pinned_images" help:"Images reported pinned, which kubelet's image garbage collection never removes (pause_image always is). Each is a reference matched exactly once normalized (registry.k8s.io/pause:3.10, or by digest; a short name pins what it resolves to under each unqualified-search registry), or a registry host and path ending in one * that prefixes the image's names (registry.k8s.io/*)."`

	MaxConcurrentRequests int `toml:"max_concurrent_requests" help:"CRI requests handled at once; as many more wait, the rest get ResourceExhausted."`
	EventsBuffer          int `toml:"events_buffer" help:"GetContainerEvents: how many events a stream may fall behind by before it ends with Aborted, so that its client (kubelet's evented PLEG) relists instead of missing one."`

	MetricsAddress string `toml:"metrics_address" help:"Where the Prometheus endpoint (/metrics) listens: a loopback address such as 127.0.0.1:9464. Empty (the default) turns it off."`

	StreamAddress string             `toml:"stream_address" help:"Where the exec/attach/port-forward streaming server listens: a loopback address (kubelet proxies to it); port 0 picks a free port."`
	Conmon        string             `toml:"conmon" help:"conmon, the per-container monitor that outlives crispd."`
	Trust         Trust              `toml:"trust" help:"Which runtime handler runs a pod: the trust policy (see README)."`
	Network       Network            `toml:"network" help:"Pod networking through CNI."`
	Storage       Storage            `toml:"storage" help:"Image and container storage (go.podman.io/storage)."`
	SQLite        SQLite             `toml:"sqlite" help:"The state database."`
	Reconciler    Reconciler         `toml:"reconciler" help:"The reconciler, which makes the database agree with the node."`
	Runtimes      map[string]Handler `toml:"runtimes" help:"OCI runtime handlers by name (the RuntimeClass handler)."`
}

// Trust is the trust policy's configuration.
type Trust struct {
	DefaultRuntime           string `toml:"default_runtime" help:"Handler for trusted pods (and privileged ones, always)."`
	UntrustedRuntime         string `toml:"untrusted_runtime" help:"Handler for untrusted pods; empty means none."`
	DefaultWorkloadTrust     string `toml:"default_workload_trust" help:"trusted or untrusted: the trust of a pod that has no hint. Privileged pods are always trusted."`
	UntrustedFallback        string `toml:"untrusted_fallback" help:"refuse (fail closed) or trusted: what to do with an untrusted pod when there is no untrusted runtime."`
	UntrustedHostAccess      string `toml:"untrusted_host_access" help:"refuse (FailedPrecondition) or trusted: what to do with an untrusted pod (annotated, or by default_workload_trust) that asks for host network, PID or IPC, or to be privileged. gVisor cannot share the host's namespaces; trusted moves such pods to default_runtime."`
	AllowTrustedRuntimeClass bool   `toml:"allow_trusted_runtime_class" help:"With default_workload_trust = untrusted, whether a RuntimeClass may name a trusted handler. Off, such pods are refused, so a RuntimeClass cannot take a pod out of the sandbox."`
}

// Network configures CNI.
type Network struct {
	PluginDirs []string `toml:"plugin_dirs" help:"Where CNI plugin binaries are."`
	ConfDir    string   `toml:"conf_dir" help:"The node's CNI config directory, where a CNI DaemonSet (Calico, Cilium, Flannel) writes its config. Watched: the first file by name ending in .conflist, .conf or .json that parses is the pod network, and a change applies to pods created afterwards. Empty: no directory."`
	Fallback   string   `toml:"fallback" help:"What serves pods while conf_dir holds no config: bridge (crisp's built-in bridge, below) or none (NetworkReady stays false and pods wait, as containerd and CRI-O do). A node that gets its network from a CNI DaemonSet wants none, so that it is not Ready before its network is."`
	Bridge     Bridge   `toml:"bridge" help:"crisp's built-in bridge network (network name crisp): bridge, host-local IPAM, portmap."`
}

// Bridge configures the built-in bridge network.
type Bridge struct {
	Name   string `toml:"name" help:"The Linux bridge device; it holds the first address of each subnet, through which the host reaches its pods."`
	Subnet string `toml:"subnet" help:"Pod addresses until kubelet sends the node's pod CIDR (UpdateRuntimeConfig, remembered in the database), which then replaces it for new pods. One CIDR, or an IPv4 and an IPv6 one separated by a comma."`
	Egress string `toml:"egress" help:"masquerade (a default route; traffic leaving the node is masqueraded behind its address), routed (a default route, no masquerade: the network routes the pod CIDR to the node) or none (no default route: pods reach the node and each other only)."`
}

// Storage configures images and container rootfs storage.
type Storage struct {
	Driver               string   `toml:"driver" help:"Graph driver: overlay, or vfs where overlay is unavailable."`
	DriverOptions        []string `toml:"driver_options" help:"Graph driver options, e.g. overlay.mountopt=nodev."`
	GraphRoot            string   `toml:"graph_root" help:"Images and container layers."`
	RunRoot              string   `toml:"run_root" help:"Mounts and locks of the store; a reboot clears it."`
	RegistriesConf       string   `toml:"registries_conf" help:"A registries.conf(5) for mirrors, blocked and insecure registries. Empty: $CONTAINERS_REGISTRIES_CONF, else /etc/containers/registries.conf. Registries on loopback are always reached over plain HTTP."`
	UnqualifiedSearch    []string `toml:"unqualified_search_registries" help:"Registries that resolve short image names such as busybox, in order. Empty: those of registries.conf; with neither, short names are refused."`
	SignaturePolicy      string   `toml:"signature_policy" help:"A policy.json(5). Empty: /etc/containers/policy.json if it exists, else accept any image."`
	PullProgressTimeout  Duration `toml:"image_pull_progress_timeout" help:"A pull is cancelled (Unavailable) when the registry sends no data for this long while the pull waits on it; a slow pull that keeps receiving is never cut off, and unpacking layers does not count. 0 disables it."`
	UsageRefreshInterval Duration `toml:"usage_refresh_interval" help:"ImageFsInfo answers from a cached measurement of the store, taken again this often and soon after each pull, load or image removal."`
}

// SQLite tunes the state database.
type SQLite struct {
	Synchronous string `toml:"synchronous" help:"NORMAL survives any crash of crispd without losing a committed change; a power loss may drop the last few, which the reconciler repairs from storage and runtime. FULL syncs every commit."`
}

// Reconciler tunes the reconcile loop.
type Reconciler struct {
	Interval      Duration `toml:"interval" help:"Time between periodic passes (plus up to 10% jitter)."`
	Grace         Duration `toml:"grace" help:"Objects that changed more recently than this are left alone: a CRI call may still be working on them."`
	ActionTimeout Duration `toml:"action_timeout" help:"Time limit of each repair."`
	BootIDFile    string   `toml:"boot_id_file" help:"Where the machine's boot id is read; a new one at start means the node rebooted (tests point it elsewhere)."`
}

// Handler is one OCI runtime handler.
type Handler struct {
	Path                         string   `toml:"path" help:"The runtime binary."`
	Type                         string   `toml:"type" help:"runc or runsc: how crisp drives it."`
	Root                         string   `toml:"root" help:"The runtime's own state root, one per handler."`
	Class                        string   `toml:"class" help:"trusted or untrusted: which workloads it may run."`
	PodAnnotations               []string `toml:"pod_annotations" help:"Pod annotations passed into the OCI specs of the pod's infra and containers, as patterns (a trailing * matches any suffix, e.g. io.kubernetes.cri.rdt-class or example.com/*). Others never reach the runtime, so a tenant cannot set runtime-interpreted keys such as dev.gvisor.*."`
	ContainerAnnotations         []string `toml:"container_annotations" help:"Container annotations passed into the container's OCI spec, as patterns like pod_annotations."`
	Network                      string   `toml:"network" help:"runsc only: whose network stack serves the pod, inside its network namespace. sandbox (the default): gVisor's own (netstack) takes over the pod's interfaces and addresses; the host kernel only moves its packets. host: the host kernel's, which gVisor passes the pod's sockets to; gVisor documents it as faster but less isolated from the host. Port-forward into a sandbox pod runs through a crispd helper exec'd inside it. A change applies to pods created afterwards: port-forward into a pod created under sandbox fails once the handler says host, until the pod is recreated."`
	Platform                     string   `toml:"platform" help:"runsc only: how the gVisor sentry intercepts the sandbox's system calls: systrap (the default of current gVisor, and the fastest on this kind of host), ptrace (slower, works everywhere, the only one gVisor releases before 2023 have besides kvm) or kvm (needs /dev/kvm). \"\" leaves it to runsc."`
	ExtraArgs                    []string `toml:"extra_args" help:"Global flags passed to the runtime, e.g. runsc's --oci-seccomp. runsc's --network and --platform are set by network and platform, never here."`
	PrivilegedWithoutHostDevices bool     `toml:"privileged_without_host_devices" help:"Privileged containers of this handler do not get the host's devices (/dev is the default set)."`
}

// Duration is a time.Duration written as "30s" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	d.Duration = v
	return err
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Load returns the defaults overlaid with the file at path. An empty path
// means DefaultPath if it exists. Unknown keys are an error, so a typo is
// not silently ignored.
func Load(path string) (Config, error) {
	var c Config
	if _, err := toml.Decode(defaults, &c); err != nil {
		return c, fmt.Errorf("embedded defaults: %w", err)
	}
	if path == "" {
		if _, err := os.Stat(DefaultPath); err != nil {
			return c, nil
		}
		path = DefaultPath
	}
	defaultHandlers := c.Runtimes
	c.Runtimes = nil
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	c.Runtimes = mergeHandlers(md, defaultHandlers, c.Runtimes)
	if und := md.Undecoded(); len(und) > 0 {
		return c, fmt.Errorf("config %s: unknown keys %v", path, und)
	}
	return c, nil
}

// mergeHandlers overlays the file's handlers on the default ones key by
// key: TOML decoding replaces a map entry whole, so without this a file
// that sets only runtimes.runc.extra_args would lose runc's path.
func mergeHandlers(md toml.MetaData, defaults, file map[string]Handler) map[string]Handler {
	out := map[string]Handler{}
	for name, h := range defaults {
		out[name] = h
	}
	for name, h := range file {
		merged, ok := out[name]
		if !ok {
			out[name] = h
			continue
		}
		mv, fv := reflect.ValueOf(&merged).Elem(), reflect.ValueOf(h)
		for i := 0; i < mv.NumField(); i++ {
			if md.IsDefined("runtimes", name, mv.Type().Field(i).Tag.Get("toml")) {
				mv.Field(i).Set(fv.Field(i))
			}
		}
		out[name] = merged
	}
	return out
}

// Resolve fills the paths left empty from run_dir and state_dir and checks
// the values. Call it after flags have been applied.
func (c *Config) Resolve() error {
	if c.RunDir == "" || c.StateDir == "" {
		return fmt.Errorf("config: run_dir and state_dir must be set")
	}
	def := func(p *string, dir, name string) {
		if *p == "" {
			*p = filepath.Join(dir, name)
		}
	}
	def(&c.Socket, c.RunDir, "crisp.sock")
	def(&c.AdminSocket, c.RunDir, "admin.sock")
	def(&c.Database, c.StateDir, "state.db")
	def(&c.Storage.GraphRoot, c.StateDir, "storage")
	def(&c.Storage.RunRoot, c.RunDir, "storage")
	if c.Storage.Driver != "overlay" && c.Storage.Driver != "vfs" {
		return fmt.Errorf("config: storage.driver must be overlay or vfs, not %q", c.Storage.Driver)
	}
	for name, h := range c.Runtimes {
		def(&h.Root, c.RunDir, name)
		if h.Class != "trusted" && h.Class != "untrusted" {
			return fmt.Errorf("config: runtimes.%s.class must be trusted or untrusted, not %q", name, h.Class)
		}
		if h.Path == "" {
			return fmt.Errorf("config: runtimes.%s.path is empty", name)
		}
		if h.Type != "runc" && h.Type != "runsc" {
			return fmt.Errorf("config: runtimes.%s.type must be runc or runsc, not %q", name, h.Type)
		}
		if h.Class == "untrusted" && !sandboxing(h.Type) {
			return fmt.Errorf("config: runtimes.%s.class is untrusted but its type %s does not sandbox; an untrusted handler must be a sandboxing runtime (runsc)", name, h.Type)
		}
		for _, patterns := range [][]string{h.PodAnnotations, h.ContainerAnnotations} {
			for _, p := range patterns {
				if p == "" || strings.Contains(strings.TrimSuffix(p, "*"), "*") {
					return fmt.Errorf("config: runtimes.%s: annotation pattern %q must be a key, or a prefix ending in one *", name, p)
				}
			}
		}
		if err := resolveNetwork(name, &h); err != nil {
			return err
		}
		c.Runtimes[name] = h
	}
	if err := c.checkNetwork(); err != nil {
		return err
	}
	if err := c.checkTrust(); err != nil {
		return err
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log_level must be debug, info, warn or error, not %q", c.LogLevel)
	}
	switch c.LogFormat {
	case "auto", "text", "json":
	default:
		return fmt.Errorf("config: log_format must be auto, text or json, not %q", c.LogFormat)
	}
	if c.MaxConcurrentRequests <= 0 {
		return fmt.Errorf("config: max_concurrent_requests must be positive, not %d", c.MaxConcurrentRequests)
	}
	if c.EventsBuffer <= 0 {
		return fmt.Errorf("config: events_buffer must be positive, not %d", c.EventsBuffer)
	}
	if c.Storage.PullProgressTimeout.Duration < 0 || c.Storage.UsageRefreshInterval.Duration <= 0 {
		return fmt.Errorf("config: storage.image_pull_progress_timeout must not be negative (0 disables it), storage.usage_refresh_interval must be positive")
	}
	if c.Reconciler.Interval.Duration <= 0 || c.Reconciler.Grace.Duration < 0 || c.Reconciler.ActionTimeout.Duration <= 0 {
		return fmt.Errorf("config: reconciler interval and action_timeout must be positive, grace not negative")
	}
	return nil
}

// Fallbacks of network.fallback.
const (
	FallbackBridge = "bridge"
	FallbackNone   = "none"
)

func (c *Config) checkNetwork() error {
	n := c.Network
	if n.ConfDir != "" && !filepath.IsAbs(n.ConfDir) {
		return fmt.Errorf("config: network.conf_dir %q is not an absolute path", n.ConfDir)
	}
	switch n.Fallback {
	case FallbackBridge:
	case FallbackNone:
		if n.ConfDir == "" {
			return fmt.Errorf("config: network.fallback = none needs a network.conf_dir, or pods could never have a network")
		}
	default:
		return fmt.Errorf("config: network.fallback must be bridge or none, not %q", n.Fallback)
	}
	if _, err := n.Bridge.Subnets(); err != nil {
		return fmt.Errorf("config: network.bridge.subnet: %w", err)
	}
	switch n.Bridge.Egress {
	case "masquerade", "routed", "none":
	default:
		return fmt.Errorf("config: network.bridge.egress must be masquerade, routed or none, not %q", n.Bridge.Egress)
	}
	return nil
}

// Subnets parses the subnet key: comma-separated CIDRs.
func (b Bridge) Subnets() ([]netip.Prefix, error) {
	return network.ParseCIDRs(b.Subnet)
}

// sandboxing reports runtime types that isolate a workload from the host
// kernel: what an untrusted handler must be.
func sandboxing(typ string) bool { return typ == "runsc" }

// Network modes of a runsc handler (runsc's --network).
const (
	NetworkSandbox = "sandbox" // gVisor's own netstack, in the pod's network namespace
	NetworkHost    = "host"    // the host kernel's network stack, in the pod's network namespace
)

// resolveNetwork checks a handler's network key and defaults it to
// sandbox for runsc. The key is the only place runsc's --network is set:
// crisp itself acts on it (the sandbox's create, port-forward), so a flag
// in extra_args would silently disagree with what crisp believes.
func resolveNetwork(name string, h *Handler) error {
	if h.Type != "runsc" {
		if h.Network != "" {
			return fmt.Errorf("config: runtimes.%s.network = %q: only a handler of type runsc has a network mode (this one is type %s)", name, h.Network, h.Type)
		}
		if h.Platform != "" {
			return fmt.Errorf("config: runtimes.%s.platform = %q: only a handler of type runsc has a platform (this one is type %s)", name, h.Platform, h.Type)
		}
		return nil
	}
	for i, a := range h.ExtraArgs {
		switch flagName(a) {
		case "network":
			return fmt.Errorf("config: runtimes.%s.extra_args[%d] = %q: set runtimes.%s.network (sandbox or host) instead", name, i, a, name)
		case "platform":
			return fmt.Errorf("config: runtimes.%s.extra_args[%d] = %q: set runtimes.%s.platform (systrap, ptrace or kvm) instead", name, i, a, name)
		}
	}
	switch h.Platform {
	case "", "systrap", "ptrace", "kvm":
	default:
		return fmt.Errorf("config: runtimes.%s.platform must be systrap, ptrace or kvm, not %q", name, h.Platform)
	}
	switch h.Network {
	case "":
		h.Network = NetworkSandbox
	case NetworkSandbox, NetworkHost:
	default:
		return fmt.Errorf("config: runtimes.%s.network must be sandbox or host, not %q", name, h.Network)
	}
	return nil
}

// flagName is the name of a command-line flag as Go's flag package (and
// so runsc) reads it: "--network=host" and "-network" are "network"; a
// non-flag argument has none.
func flagName(arg string) string {
	if !strings.HasPrefix(arg, "-") {
		return ""
	}
	name := strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-")
	name, _, _ = strings.Cut(name, "=")
	return name
}

// HandlerNames returns the configured handler names, sorted.
func (c *Config) HandlerNames() []string {
	var out []string
	for name := range c.Runtimes {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// CleanMarker is the file crispd writes last on a clean stop and removes at
// start: its absence at start means the previous crispd died.
func (c *Config) CleanMarker() string { return filepath.Join(c.StateDir, "clean-shutdown") }

func (c *Config) checkTrust() error {
	t := c.Trust
	if h, ok := c.Runtimes[t.DefaultRuntime]; !ok || h.Class != "trusted" {
		return fmt.Errorf("config: trust.default_runtime %q must name a configured trusted handler", t.DefaultRuntime)
	}
	if t.UntrustedRuntime != "" {
		if h, ok := c.Runtimes[t.UntrustedRuntime]; !ok || h.Class != "untrusted" {
			return fmt.Errorf("config: trust.untrusted_runtime %q must name a configured untrusted handler, or be empty", t.UntrustedRuntime)
		}
	}
	if t.DefaultWorkloadTrust != "trusted" && t.DefaultWorkloadTrust != "untrusted" {
		return fmt.Errorf("config: trust.default_workload_trust must be trusted or untrusted, not %q", t.DefaultWorkloadTrust)
	}
	if t.UntrustedFallback != "refuse" && t.UntrustedFallback != "trusted" {
		return fmt.Errorf("config: trust.untrusted_fallback must be refuse or trusted, not %q", t.UntrustedFallback)
	}
	if t.UntrustedHostAccess != "refuse" && t.UntrustedHostAccess != "trusted" {
		return fmt.Errorf("config: trust.untrusted_host_access must be refuse or trusted, not %q", t.UntrustedHostAccess)
	}
	return nil
}
