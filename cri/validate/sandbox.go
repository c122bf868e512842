package validate

import (
	"fmt"
	"net"
	"regexp"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/ocispec"
)

// DNS bounds, Kubernetes' own: the resolver reads three nameservers, and
// kubelet allows 32 search domains of 2048 bytes in all.
const (
	maxDNSServers     = 3
	maxDNSSearches    = 32
	maxDNSSearchBytes = 2048
	maxDNSOptions     = 32
)

// hostnameFormat is an RFC 1123 name, labels of letters, digits and '-'
// separated by dots, with '_' tolerated inside a label as real node names
// have it (a host-network pod gets the node's).
var hostnameFormat = regexp.MustCompile(`^[a-zA-Z0-9]([-_a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-_a-zA-Z0-9]*[a-zA-Z0-9])?)*$`)

// RunPodSandbox checks a pod before it is recorded: metadata, hostname,
// log directory, DNS, port mappings, labels and annotations, and through
// ocispec.CheckSandbox everything that becomes the pod's namespaces,
// sysctls, cgroup and infra spec.
func (v *Validator) RunPodSandbox(r *runtimeapi.RunPodSandboxRequest) error {
	call := "run pod sandbox"
	cfg := r.GetConfig()
	if cfg == nil {
		return invalid(call, "config", "is missing")
	}
	m := cfg.GetMetadata()
	if m == nil {
		return invalid(call, "config.metadata", "is missing")
	}
	for _, f := range []struct{ field, v string }{{"metadata.name", m.Name}, {"metadata.namespace", m.Namespace}, {"metadata.uid", m.Uid}} {
		if err := checkName(call, f.field, f.v); err != nil {
			return err
		}
	}
	call = fmt.Sprintf("run pod sandbox %s/%s", m.Namespace, m.Name)
	if err := checkString(call, "runtime_handler", r.RuntimeHandler, maxName); err != nil {
		return err
	}
	if h := cfg.Hostname; h != "" && (len(h) > 64 || !hostnameFormat.MatchString(h)) {
		return invalid(call, "hostname", fmt.Sprintf("%q is not a valid hostname (RFC 1123, at most 64)", h))
	}
	if cfg.LogDirectory != "" {
		if err := checkAbsPath(call, "log_directory", cfg.LogDirectory); err != nil {
			return err
		}
	}
	if err := checkDNS(call, cfg.GetDnsConfig()); err != nil {
		return err
	}
	if err := v.checkPortMappings(call, cfg.GetPortMappings()); err != nil {
		return err
	}
	if err := v.checkMap(call, "labels", cfg.Labels); err != nil {
		return err
	}
	if err := v.checkMap(call, "annotations", cfg.Annotations); err != nil {
		return err
	}
	if err := v.checkPodLinux(call, cfg.GetLinux()); err != nil {
		return err
	}
	if err := ocispec.CheckSandbox(cfg); err != nil {
		return fmt.Errorf("%s: %w", call, err)
	}
	return nil
}

// checkPodLinux checks the strings of the pod's Linux config that
// ocispec.CheckSandbox does not: the cgroup parent's form, sysctl map
// bounds, SELinux options.
func (v *Validator) checkPodLinux(call string, l *runtimeapi.LinuxPodSandboxConfig) error {
	if p := l.GetCgroupParent(); p != "" {
		if err := checkString(call, "linux.cgroup_parent", p, maxPath); err != nil {
			return err
		}
		if hasDotDot(p) {
			return invalid(call, "linux.cgroup_parent", fmt.Sprintf("%q has a '..' element", p))
		}
	}
	if err := v.checkMap(call, "linux.sysctls", l.GetSysctls()); err != nil {
		return err
	}
	sc := l.GetSecurityContext()
	for _, f := range []struct{ field, v string }{
		{"linux.security_context.seccomp_profile_path", sc.GetSeccompProfilePath()},
		{"linux.security_context.seccomp.localhost_ref", sc.GetSeccomp().GetLocalhostRef()},
		{"linux.security_context.namespace_options.target_id", sc.GetNamespaceOptions().GetTargetId()},
	} {
		if err := checkString(call, f.field, f.v, maxPath); err != nil {
			return err
		}
	}
	return checkSELinux(call, "linux.security_context.selinux_options", sc.GetSelinuxOptions())
}

// checkSELinux checks SELinux labels, which crisp passes on only where
// SELinux is enabled: parts are single words.
func checkSELinux(call, field string, o *runtimeapi.SELinuxOption) error {
	for _, p := range []struct{ name, v string }{{"user", o.GetUser()}, {"role", o.GetRole()}, {"type", o.GetType()}, {"level", o.GetLevel()}} {
		if err := oneLine(call, field+"."+p.name, p.v, maxName); err != nil {
			return err
		}
		if strings.ContainsAny(p.v, " \t") {
			return invalid(call, field+"."+p.name, fmt.Sprintf("%q has white space", p.v))
		}
	}
	return nil
}

// checkDNS checks what crisp writes into the pod's resolv.conf: servers are
// IP addresses; searches and options are single words, so that nothing
// can add a line of its own.
func checkDNS(call string, d *runtimeapi.DNSConfig) error {
	if d == nil {
		return nil
	}
	if len(d.Servers) > maxDNSServers {
		return invalid(call, "dns_config.servers", fmt.Sprintf("has %d servers, more than the resolver's %d", len(d.Servers), maxDNSServers))
	}
	for i, s := range d.Servers {
		if net.ParseIP(s) == nil {
			return invalid(call, fmt.Sprintf("dns_config.servers[%d]", i), fmt.Sprintf("%q is not an IP address", s))
		}
	}
	if len(d.Searches) > maxDNSSearches {
		return invalid(call, "dns_config.searches", fmt.Sprintf("has %d domains, more than %d", len(d.Searches), maxDNSSearches))
	}
	total := 0
	for i, s := range d.Searches {
		total += len(s) + 1
		if err := checkWord(call, fmt.Sprintf("dns_config.searches[%d]", i), s, maxName); err != nil {
			return err
		}
	}
	if total > maxDNSSearchBytes {
		return invalid(call, "dns_config.searches", fmt.Sprintf("hold %d bytes, more than %d", total, maxDNSSearchBytes))
	}
	if len(d.Options) > maxDNSOptions {
		return invalid(call, "dns_config.options", fmt.Sprintf("has %d options, more than %d", len(d.Options), maxDNSOptions))
	}
	for i, o := range d.Options {
		if err := checkWord(call, fmt.Sprintf("dns_config.options[%d]", i), o, maxValue); err != nil {
			return err
		}
	}
	return nil
}

// checkWord requires a non-empty single word: no white space, no line
// break, no NUL byte.
func checkWord(call, field, v string, max int) error {
	if v == "" {
		return invalid(call, field, "is empty")
	}
	if err := oneLine(call, field, v, max); err != nil {
		return err
	}
	if strings.ContainsAny(v, " \t\v\f") {
		return invalid(call, field, fmt.Sprintf("%q has white space", v))
	}
	return nil
}

// checkPortMappings checks ports, protocols and host IPs, and that no host
// port is published twice.
func (v *Validator) checkPortMappings(call string, pms []*runtimeapi.PortMapping) error {
	if len(pms) > v.limits.PortMappings {
		return invalid(call, "port_mappings", fmt.Sprintf("has %d entries, more than %d", len(pms), v.limits.PortMappings))
	}
	seen := map[string]int{}
	for i, pm := range pms {
		field := fmt.Sprintf("port_mappings[%d]", i)
		if pm == nil {
			return invalid(call, field, "is empty")
		}
		if _, ok := runtimeapi.Protocol_name[int32(pm.Protocol)]; !ok {
			return invalid(call, field+".protocol", fmt.Sprintf("%d is not TCP, UDP or SCTP", pm.Protocol))
		}
		if pm.ContainerPort <= 0 || pm.ContainerPort > 65535 {
			return invalid(call, field+".container_port", fmt.Sprintf("%d is outside 1..65535", pm.ContainerPort))
		}
		if pm.HostPort < 0 || pm.HostPort > 65535 {
			return invalid(call, field+".host_port", fmt.Sprintf("%d is outside 0..65535", pm.HostPort))
		}
		if pm.HostIp != "" && net.ParseIP(pm.HostIp) == nil {
			return invalid(call, field+".host_ip", fmt.Sprintf("%q is not an IP address", pm.HostIp))
		}
		if pm.HostPort == 0 {
			continue
		}
		key := fmt.Sprintf("%s/%d/%s", pm.HostIp, pm.HostPort, pm.Protocol)
		if j, dup := seen[key]; dup {
			return invalid(call, field, fmt.Sprintf("publishes host port %d/%s again (port_mappings[%d])", pm.HostPort, pm.Protocol, j))
		}
		seen[key] = i
	}
	return nil
}
