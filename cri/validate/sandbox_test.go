package validate

import (
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestRunPodSandbox: kubelet's pod passes; each malformed field is refused
// with the field named. The class column is docs/malformed-input.md's.
func TestRunPodSandbox(t *testing.T) {
	v := newTestValidator()
	if err := v.RunPodSandbox(kubeletPod()); err != nil {
		t.Fatalf("kubelet's pod refused: %v", err)
	}
	for _, tt := range podCases() {
		t.Run(tt.class+"/"+tt.name, func(t *testing.T) {
			r := kubeletPod()
			tt.edit(r)
			err := v.RunPodSandbox(r)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantInvalid(t, err, tt.want...)
			if m := r.GetConfig().GetMetadata(); m != nil && m.Name == "web-7d9f8b6c5-x2x4z" && m.Namespace == "default" && m.Uid == podUID {
				wantInvalid(t, err, "run pod sandbox default/web-7d9f8b6c5-x2x4z") // the object is named
			}
		})
	}
}

type pod = runtimeapi.RunPodSandboxRequest

// podCase is an edit of kubelet's pod and what validation says of it.
type podCase struct {
	class, name string
	edit        func(*pod)
	want        []string // nil = accepted
}

// podCases are shared by TestRunPodSandbox and the fuzz target's seeds.
func podCases() []podCase {
	linux := func(r *pod) *runtimeapi.LinuxPodSandboxConfig { return r.Config.Linux }
	sc := func(r *pod) *runtimeapi.LinuxSandboxSecurityContext { return r.Config.Linux.SecurityContext }
	return []podCase{
		{"missing", "no config", func(r *pod) { r.Config = nil }, []string{"config is missing"}},
		{"missing", "no metadata", func(r *pod) { r.Config.Metadata = nil }, []string{"config.metadata is missing"}},
		{"missing", "empty name", func(r *pod) { r.Config.Metadata.Name = "" }, []string{"metadata.name is empty"}},
		{"missing", "empty namespace", func(r *pod) { r.Config.Metadata.Namespace = "" }, []string{"metadata.namespace is empty"}},
		{"missing", "empty uid", func(r *pod) { r.Config.Metadata.Uid = "" }, []string{"metadata.uid is empty"}},
		{"name", "slash in name", func(r *pod) { r.Config.Metadata.Name = "a/b" }, []string{"metadata.name", "not a valid name"}},
		{"name", "dot-dot namespace", func(r *pod) { r.Config.Metadata.Namespace = ".." }, []string{"metadata.namespace"}},
		{"too-long", "long name", func(r *pod) { r.Config.Metadata.Name = strings.Repeat("a", 254) }, []string{"metadata.name"}},
		{"nul", "NUL in runtime handler", func(r *pod) { r.RuntimeHandler = "runc\x00" }, []string{"runtime_handler", "NUL"}},
		{"hostname", "hostname with space", func(r *pod) { r.Config.Hostname = "a b" }, []string{"hostname"}},
		{"line-break", "hostname with newline", func(r *pod) { r.Config.Hostname = "a\nb" }, []string{"hostname"}},
		{"too-long", "hostname of 65", func(r *pod) { r.Config.Hostname = strings.Repeat("h", 65) }, []string{"hostname"}},
		{"relative-path", "relative log directory", func(r *pod) { r.Config.LogDirectory = "var/log/pods" }, []string{"log_directory", "not an absolute path"}},
		{"dotdot", "log directory with ..", func(r *pod) { r.Config.LogDirectory = "/var/log/pods/../../etc" }, []string{"log_directory", "'..'"}},
		{"nul", "NUL in log directory", func(r *pod) { r.Config.LogDirectory = "/var/log/\x00pods" }, []string{"log_directory", "NUL"}},
		{"not-ip", "DNS server not an IP", func(r *pod) { r.Config.DnsConfig.Servers = []string{"dns.example"} }, []string{"dns_config.servers[0]"}},
		{"too-many", "four DNS servers", func(r *pod) { r.Config.DnsConfig.Servers = []string{"1.1.1.1", "1.0.0.1", "8.8.8.8", "9.9.9.9"} }, []string{"dns_config.servers", "more than"}},
		{"line-break", "DNS option with newline", func(r *pod) { r.Config.DnsConfig.Options = []string{"ndots:5\nnameserver 6.6.6.6"} }, []string{"dns_config.options[0]", "line break"}},
		{"line-break", "DNS search with newline", func(r *pod) { r.Config.DnsConfig.Searches = []string{"a\nnameserver 6.6.6.6"} }, []string{"dns_config.searches[0]"}},
		{"white-space", "DNS search with space", func(r *pod) { r.Config.DnsConfig.Searches = []string{"a b"} }, []string{"dns_config.searches[0]", "white space"}},
		{"missing", "empty DNS option", func(r *pod) { r.Config.DnsConfig.Options = []string{""} }, []string{"dns_config.options[0] is empty"}},
		{"too-many", "33 search domains", func(r *pod) { r.Config.DnsConfig.Searches = make([]string, 33) }, []string{"dns_config.searches", "more than 32"}},
		{"out-of-range", "container port 0", func(r *pod) { r.Config.PortMappings[0].ContainerPort = 0 }, []string{"port_mappings[0].container_port"}},
		{"out-of-range", "host port 70000", func(r *pod) { r.Config.PortMappings[0].HostPort = 70000 }, []string{"port_mappings[0].host_port"}},
		{"out-of-range", "negative host port", func(r *pod) { r.Config.PortMappings[0].HostPort = -1 }, []string{"port_mappings[0].host_port"}},
		{"unknown-enum", "protocol 7", func(r *pod) { r.Config.PortMappings[0].Protocol = 7 }, []string{"port_mappings[0].protocol"}},
		{"not-ip", "host IP not an IP", func(r *pod) { r.Config.PortMappings[0].HostIp = "localhost" }, []string{"port_mappings[0].host_ip"}},
		{"duplicate", "host port published twice", func(r *pod) {
			r.Config.PortMappings = append(r.Config.PortMappings, &runtimeapi.PortMapping{ContainerPort: 9090, HostPort: 30080, HostIp: "0.0.0.0"})
		}, []string{"port_mappings[1]", "again"}},
		{"missing", "nil port mapping", func(r *pod) { r.Config.PortMappings = append(r.Config.PortMappings, nil) }, []string{"port_mappings[1] is empty"}},
		{"missing", "empty label key", func(r *pod) { r.Config.Labels[""] = "x" }, []string{"labels", "empty key"}},
		{"nul", "NUL in annotation value", func(r *pod) { r.Config.Annotations["a"] = "x\x00" }, []string{`annotations["a"]`, "NUL"}},
		{"too-long", "label key of 318", func(r *pod) { r.Config.Labels[strings.Repeat("k", 318)] = "v" }, []string{"labels key", "more than 317"}},
		{"too-big", "annotations over 512 KiB", func(r *pod) { r.Config.Annotations["big"] = strings.Repeat("x", 513<<10) }, []string{"annotations"}},
		{"too-many", "1025 labels", func(r *pod) {
			for i := range 1025 {
				r.Config.Labels[strings.Repeat("l", 1+i%300)+string(rune('a'+i/300))] = "v"
			}
		}, []string{"labels", "entries"}},
		{"dotdot", "cgroup parent with ..", func(r *pod) { linux(r).CgroupParent = "/kubepods/../../system.slice" }, []string{"linux.cgroup_parent", "'..'"}},
		{"relative-path", "systemd cgroup parent", func(r *pod) { linux(r).CgroupParent = "kubepods-burstable.slice" }, []string{"cgroup_parent", "systemd"}},
		{"nul", "NUL in cgroup parent", func(r *pod) { linux(r).CgroupParent = "/kubepods\x00" }, []string{"linux.cgroup_parent", "NUL"}},
		{"sysctl", "sysctl escaping /proc/sys", func(r *pod) { linux(r).Sysctls = map[string]string{"net.//.kernel.core_pattern": "|/x"} }, []string{"linux.sysctls", "not a valid sysctl name"}},
		{"sysctl", "non-namespaced sysctl", func(r *pod) { linux(r).Sysctls = map[string]string{"kernel.panic": "1"} }, []string{"not a namespaced sysctl"}},
		{"line-break", "sysctl value with newline", func(r *pod) { linux(r).Sysctls = map[string]string{"net.ipv4.ip_forward": "1\n"} }, []string{"one line"}},
		{"out-of-range", "negative cpu shares", func(r *pod) { linux(r).Resources.CpuShares = -2 }, []string{"linux.resources", "cpu_shares"}},
		{"format", "bad hugepage size", func(r *pod) { linux(r).Resources.HugepageLimits[0].PageSize = "2 MB" }, []string{"hugepage_limits[0].page_size"}},
		{"out-of-range", "negative overhead memory", func(r *pod) { linux(r).Overhead.MemoryLimitInBytes = -1 }, []string{"linux.overhead", "memory_limit_in_bytes"}},
		{"unknown-enum", "network mode 9", func(r *pod) { sc(r).NamespaceOptions.Network = 9 }, []string{"namespace_options.network", "unknown mode"}},
		{"unknown-enum", "pid TARGET for a pod", func(r *pod) { sc(r).NamespaceOptions.Pid = runtimeapi.NamespaceMode_TARGET }, []string{"namespace_options.pid"}},
		{"unsupported", "user namespace", func(r *pod) {
			sc(r).NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}
		}, []string{"user namespaces are not supported"}},
		{"out-of-range", "negative run_as_user", func(r *pod) { sc(r).RunAsUser.Value = -1 }, []string{"run_as_user"}},
		{"out-of-range", "run_as_group 2^32-1", func(r *pod) { sc(r).RunAsGroup.Value = 1<<32 - 1 }, []string{"run_as_group"}},
		{"out-of-range", "negative supplemental group", func(r *pod) { sc(r).SupplementalGroups = []int64{-5} }, []string{"supplemental_groups[0]"}},
		{"unknown-enum", "groups policy 5", func(r *pod) { sc(r).SupplementalGroupsPolicy = 5 }, []string{"supplemental_groups_policy"}},
		{"unknown-enum", "seccomp type 9", func(r *pod) { sc(r).Seccomp.ProfileType = 9 }, []string{"seccomp", "unknown profile type"}},
		{"white-space", "SELinux type with space", func(r *pod) {
			sc(r).SelinuxOptions = &runtimeapi.SELinuxOption{Type: "container_t s0"}
		}, []string{"selinux_options.type"}},
		{"", "host network pod, no sysctls", func(r *pod) {
			sc(r).NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
			linux(r).Sysctls = map[string]string{"kernel.shm_rmid_forced": "1"}
			r.Config.PortMappings = nil
		}, nil},
		{"", "host name with underscore", func(r *pod) { r.Config.Hostname = "node_1" }, nil},
		{"", "no DNS, no linux", func(r *pod) { r.Config.DnsConfig, r.Config.Linux = nil, nil }, nil},
	}
}
