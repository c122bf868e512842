package ocispec

import (
	"maps"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func testInfra() InfraInput {
	in := testInput()
	in.Sandbox.InfraID = "infra1"
	in.Sandbox.IPCNSPath, in.Sandbox.UTSNSPath = "", ""
	in.Sandbox.Config.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{}
	return InfraInput{Sandbox: in.Sandbox, RootfsPath: "/run/crisp/pods/pod1/infra", CrispdPath: "/usr/bin/crispd"}
}

func TestForSandboxInfra(t *testing.T) {
	in := testInfra()
	in.Sandbox.Config.Annotations = map[string]string{"a": "1", "io.kubernetes.cri.container-type": "container", "dev.gvisor.x": "y"}
	in.Passthrough.Pod = []string{"a", "io.kubernetes.cri.*"}
	in.Annotations = map[string]string{"io.crisp.pod": "pod1"}
	in.Sandbox.Config.Linux.SecurityContext.RunAsUser = int64v(65535)
	in.Sandbox.Config.Linux.SecurityContext.RunAsGroup = int64v(65534)
	in.Sandbox.Config.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel/shm_rmid_forced": "1"}
	s, err := ForSandboxInfra(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"Args", jsonOf(s.Process.Args), `["/crispd","pause"]`},
		{"User", jsonOf(s.Process.User), `{"uid":65535,"gid":65534}`},
		{"Capabilities", jsonOf(s.Process.Capabilities), `{}`},
		{"NoNewPrivileges", s.Process.NoNewPrivileges, true},
		{"OOMScoreAdj", *s.Process.OOMScoreAdj, -998},
		{"Root", jsonOf(s.Root), `{"path":"/run/crisp/pods/pod1/infra","readonly":true}`},
		{"Hostname", s.Hostname, "web"},
		{"crispd mount", findMount(s.Mounts, "/crispd"), "/crispd bind /usr/bin/crispd bind,rprivate,ro,nosuid,nodev"},
		{"Sysctl", jsonOf(s.Linux.Sysctl), `{"kernel.shm_rmid_forced":"1","net.ipv4.ip_unprivileged_port_start":"0"}`},
		{"CgroupsPath", s.Linux.CgroupsPath, "/kubepods/besteffort/poduid/crisp-infra1"},
		{"seccomp", seccompKind(s.Linux.Seccomp), "default"},
		{"first device rule", jsonOf(s.Linux.Resources.Devices[0]), `{"allow":false,"access":"rwm"}`},
		{"masked paths", len(s.Linux.MaskedPaths) > 0, true},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	wantAnn := map[string]string{
		"a": "1", "io.crisp.pod": "pod1", AnnotationContainerType: "sandbox", AnnotationSandboxID: "pod1",
		AnnotationSandboxName: "web", AnnotationSandboxNamespace: "default", AnnotationSandboxUID: "uid",
	}
	if !maps.Equal(s.Annotations, wantAnn) {
		t.Errorf("Annotations = %v, want %v", s.Annotations, wantAnn)
	}
}

func TestInfraNamespacesAndRunsc(t *testing.T) {
	mnt := ns(specs.MountNamespace, "")
	tests := []struct {
		name         string
		edit         func(*InfraInput)
		want         []specs.LinuxNamespace
		wantHostname string
		wantSandbox  string
		wantOOM      int
	}{
		{
			name:         "new pid, ipc and uts; pinned netns",
			want:         []specs.LinuxNamespace{ns(specs.PIDNamespace, ""), ns(specs.NetworkNamespace, "/run/crisp/netns/pod1"), ns(specs.IPCNamespace, ""), ns(specs.UTSNamespace, ""), mnt},
			wantHostname: "web", wantSandbox: "pod1", wantOOM: -998,
		},
		{
			name: "runsc sandbox id is the infra's, pinned ipc and uts joined, clamped",
			edit: func(in *InfraInput) {
				in.Sandbox.RuntimeType = RuntimeRunsc
				in.Sandbox.IPCNSPath, in.Sandbox.UTSNSPath = "/p/ipc", "/p/uts"
				in.ClampOOMScoreAdj = true
			},
			want:         []specs.LinuxNamespace{ns(specs.PIDNamespace, ""), ns(specs.NetworkNamespace, "/run/crisp/netns/pod1"), ns(specs.IPCNamespace, "/p/ipc"), ns(specs.UTSNamespace, "/p/uts"), mnt},
			wantHostname: "web", wantSandbox: "infra1", wantOOM: 0,
		},
		{
			name: "host network, pid and ipc",
			edit: func(in *InfraInput) {
				in.Sandbox.NetNSPath = ""
				in.Sandbox.Config.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE}
			},
			want: []specs.LinuxNamespace{mnt}, wantSandbox: "pod1", wantOOM: -998,
		},
		{
			name:         "no netns path: a new one",
			edit:         func(in *InfraInput) { in.Sandbox.NetNSPath = "" },
			want:         []specs.LinuxNamespace{ns(specs.PIDNamespace, ""), ns(specs.NetworkNamespace, ""), ns(specs.IPCNamespace, ""), ns(specs.UTSNamespace, ""), mnt},
			wantHostname: "web", wantSandbox: "pod1", wantOOM: -998,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInfra()
			if tt.edit != nil {
				tt.edit(&in)
			}
			s, err := ForSandboxInfra(in)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Linux.Namespaces; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Namespaces = %v, want %v", got, tt.want)
			}
			if s.Hostname != tt.wantHostname {
				t.Errorf("Hostname = %q, want %q", s.Hostname, tt.wantHostname)
			}
			if got := s.Annotations[AnnotationSandboxID]; got != tt.wantSandbox {
				t.Errorf("sandbox-id = %q, want %q", got, tt.wantSandbox)
			}
			if got := *s.Process.OOMScoreAdj; got != tt.wantOOM {
				t.Errorf("OOMScoreAdj = %d, want %d", got, tt.wantOOM)
			}
		})
	}
}

func TestForSandboxInfraErrors(t *testing.T) {
	tests := []struct {
		name    string
		sysctls map[string]string
		ns      *runtimeapi.NamespaceOption
		edit    func(*InfraInput)
		wantErr string
	}{
		{name: "not namespaced", sysctls: map[string]string{"kernel.panic": "1"}, wantErr: `pod "default/web": linux.sysctls["kernel.panic"] is not a namespaced sysctl`},
		{name: "vm sysctl", sysctls: map[string]string{"vm.swappiness": "1"}, wantErr: `linux.sysctls["vm.swappiness"] is not a namespaced`},
		{name: "kernel.semx is not kernel.sem", sysctls: map[string]string{"kernel.semx": "1"}, wantErr: "is not a namespaced"},
		{name: "net on host network", sysctls: map[string]string{"net.core.somaxconn": "1024"}, ns: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
			wantErr: "a host-network pod may not set net.* sysctls"},
		{name: "ipc on host ipc", sysctls: map[string]string{"fs.mqueue.msg_max": "20"}, ns: &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE},
			wantErr: "a host-IPC pod may not set IPC sysctls"},
		{name: "empty segment", sysctls: map[string]string{"net.ipv4..x": "1"}, wantErr: "is not a valid sysctl name"},
		{name: "double slash becomes ..", sysctls: map[string]string{"net.//.kernel.core_pattern": "|/x"}, wantErr: "is not a valid sysctl name"},
		{name: "slash chain out of /proc/sys", sysctls: map[string]string{"net.//.//.//etc.passwd": "x"}, wantErr: "is not a valid sysctl name"},
		{name: "upper case", sysctls: map[string]string{"net.ipv4.Conf": "1"}, wantErr: "is not a valid sysctl name"},
		{name: "trailing dot", sysctls: map[string]string{"net.ipv4.": "1"}, wantErr: "is not a valid sysctl name"},
		{name: "NUL in name", sysctls: map[string]string{"net.ipv4\x00.x": "1"}, wantErr: "is not a valid sysctl name"},
		{name: "too long", sysctls: map[string]string{"net." + strings.Repeat("a", 260): "1"}, wantErr: "is not a valid sysctl name"},
		{name: "newline in value", sysctls: map[string]string{"kernel.sem": "1\n2"}, wantErr: "must be one line"},
		{name: "NUL in value", sysctls: map[string]string{"kernel.sem": "1\x002"}, wantErr: "must be one line"},
		{name: "user namespace", ns: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}}, wantErr: "user namespaces are not supported"},
		{name: "run_as_group alone", edit: func(in *InfraInput) { in.Sandbox.Config.Linux.SecurityContext.RunAsGroup = int64v(1) }, wantErr: "security_context.run_as_group needs run_as_user"},
		{name: "negative run_as_user", edit: func(in *InfraInput) { in.Sandbox.Config.Linux.SecurityContext.RunAsUser = int64v(-3) }, wantErr: "security_context.run_as_user -3"},
		{name: "relative crispd", edit: func(in *InfraInput) { in.CrispdPath = "crispd" }, wantErr: `crispd path "crispd" is not absolute`},
		{name: "bad infra id", edit: func(in *InfraInput) { in.Sandbox.InfraID = "a/b" }, wantErr: `infra container id "a/b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInfra()
			in.Sandbox.Config.Linux.Sysctls = tt.sysctls
			if tt.ns != nil {
				in.Sandbox.Config.Linux.SecurityContext.NamespaceOptions = tt.ns
			}
			if tt.edit != nil {
				tt.edit(&in)
			}
			_, err := ForSandboxInfra(in)
			checkErr(t, err, tt.wantErr, false)
		})
	}
}

func TestSysctlName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"net.ipv4.ip_forward", "net.ipv4.ip_forward"},
		{"net/ipv4/ip_forward", "net.ipv4.ip_forward"},
		{"net/ipv4/conf/eno2.100/rp_filter", "net.ipv4.conf.eno2/100.rp_filter"},
		{"net.ipv4.conf.eno2/100.rp_filter", "net.ipv4.conf.eno2/100.rp_filter"},
		{"kernel", "kernel"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := sysctlName(tt.in); got != tt.want {
				t.Errorf("sysctlName(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
