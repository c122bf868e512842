package ocispec

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func ns(t specs.LinuxNamespaceType, path string) specs.LinuxNamespace {
	return specs.LinuxNamespace{Type: t, Path: path}
}

func TestContainerNamespaces(t *testing.T) {
	const (
		netns = "/run/crisp/netns/pod1"
		ipcns = "/run/crisp/pods/pod1/ipcns"
		utsns = "/run/crisp/pods/pod1/utsns"
	)
	mnt := ns(specs.MountNamespace, "")
	tests := []struct {
		name         string
		pod, ctr     *runtimeapi.NamespaceOption
		edit         func(*ContainerInput)
		want         []specs.LinuxNamespace
		wantHostname string
		wantErr      string
	}{
		{
			name: "drop-infra pod joins the pins", pod: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			ctr:          &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			want:         []specs.LinuxNamespace{ns(specs.PIDNamespace, ""), ns(specs.NetworkNamespace, netns), ns(specs.IPCNamespace, ipcns), ns(specs.UTSNamespace, utsns), mnt},
			wantHostname: "web",
		},
		{
			name: "private cgroup namespace where the kernel has them", pod: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			edit:         func(in *ContainerInput) { in.CgroupNamespace = true },
			want:         []specs.LinuxNamespace{ns(specs.PIDNamespace, ""), ns(specs.NetworkNamespace, netns), ns(specs.IPCNamespace, ipcns), ns(specs.UTSNamespace, utsns), mnt, ns(specs.CgroupNamespace, "")},
			wantHostname: "web",
		},
		{
			name: "privileged keeps the host's cgroup namespace", pod: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			edit: func(in *ContainerInput) {
				in.CgroupNamespace, in.Sandbox.Privileged = true, true
				in.Config.Linux.SecurityContext.Privileged = true
			},
			want:         []specs.LinuxNamespace{ns(specs.PIDNamespace, ""), ns(specs.NetworkNamespace, netns), ns(specs.IPCNamespace, ipcns), ns(specs.UTSNamespace, utsns), mnt},
			wantHostname: "web",
		},
		{
			name: "container without options follows the pod", pod: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			want:         []specs.LinuxNamespace{ns(specs.PIDNamespace, ""), ns(specs.NetworkNamespace, netns), ns(specs.IPCNamespace, ipcns), ns(specs.UTSNamespace, utsns), mnt},
			wantHostname: "web",
		},
		{
			name: "shared pid joins the infra", pod: &runtimeapi.NamespaceOption{}, ctr: &runtimeapi.NamespaceOption{},
			edit: func(in *ContainerInput) {
				in.Sandbox.InfraID, in.Sandbox.InfraPID = "infra", 42
				in.Sandbox.IPCNSPath, in.Sandbox.UTSNSPath, in.Sandbox.NetNSPath = "", "", ""
			},
			want: []specs.LinuxNamespace{ns(specs.PIDNamespace, "/proc/42/ns/pid"), ns(specs.NetworkNamespace, "/proc/42/ns/net"),
				ns(specs.IPCNamespace, "/proc/42/ns/ipc"), ns(specs.UTSNamespace, "/proc/42/ns/uts"), mnt},
			wantHostname: "web",
		},
		{
			name: "pinned netns wins over the infra's", pod: &runtimeapi.NamespaceOption{}, ctr: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			edit: func(in *ContainerInput) {
				in.Sandbox.InfraPID = 42
				in.Sandbox.IPCNSPath, in.Sandbox.UTSNSPath = "", ""
			},
			want: []specs.LinuxNamespace{ns(specs.PIDNamespace, ""), ns(specs.NetworkNamespace, netns),
				ns(specs.IPCNamespace, "/proc/42/ns/ipc"), ns(specs.UTSNamespace, "/proc/42/ns/uts"), mnt},
			wantHostname: "web",
		},
		{
			name: "no infra, no pins: new namespaces", pod: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			edit: func(in *ContainerInput) {
				in.Sandbox.IPCNSPath, in.Sandbox.UTSNSPath, in.Sandbox.NetNSPath = "", "", ""
			},
			want: []specs.LinuxNamespace{ns(specs.PIDNamespace, ""), ns(specs.NetworkNamespace, ""),
				ns(specs.IPCNamespace, ""), ns(specs.UTSNamespace, ""), mnt},
			wantHostname: "web",
		},
		{
			name: "host network, pid and ipc", pod: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE},
			ctr:  &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE},
			want: []specs.LinuxNamespace{mnt}, wantHostname: "",
		},
		{
			name: "host network keeps the pod's IPC", pod: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER},
			want: []specs.LinuxNamespace{ns(specs.PIDNamespace, ""), ns(specs.IPCNamespace, ipcns), mnt}, wantHostname: "",
		},
		{
			name: "target pid", pod: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			ctr:          &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "other"},
			edit:         func(in *ContainerInput) { in.TargetPID = 77 },
			want:         []specs.LinuxNamespace{ns(specs.PIDNamespace, "/proc/77/ns/pid"), ns(specs.NetworkNamespace, netns), ns(specs.IPCNamespace, ipcns), ns(specs.UTSNamespace, utsns), mnt},
			wantHostname: "web",
		},
		{
			name: "target without pid", pod: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			ctr:     &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "other"},
			wantErr: `security_context.namespace_options.target_id "other" names no running container`,
		},
		{
			name: "pod pid without infra", pod: &runtimeapi.NamespaceOption{}, ctr: &runtimeapi.NamespaceOption{},
			wantErr: "namespace_options.pid is POD but the pod has no infra process",
		},
		{
			name: "unknown pid mode", pod: &runtimeapi.NamespaceOption{}, ctr: &runtimeapi.NamespaceOption{Pid: 9},
			wantErr: "namespace_options.pid: unknown mode 9",
		},
		{
			name: "user namespace", pod: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			ctr:     &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER, UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}},
			wantErr: "security_context.namespace_options.userns_options: user namespaces are not supported",
		},
		{
			name: "host user namespace is fine", pod: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER, UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}},
			want:         []specs.LinuxNamespace{ns(specs.PIDNamespace, ""), ns(specs.NetworkNamespace, netns), ns(specs.IPCNamespace, ipcns), ns(specs.UTSNamespace, utsns), mnt},
			wantHostname: "web",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(t, func(in *ContainerInput) {
				in.Sandbox.Config.Linux.SecurityContext.NamespaceOptions = tt.pod
				sc(in).NamespaceOptions = tt.ctr
				if tt.edit != nil {
					tt.edit(in)
				}
			})
			if !checkErr(t, err, tt.wantErr, false) {
				return
			}
			if got := s.Linux.Namespaces; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Namespaces = %v, want %v", got, tt.want)
			}
			if got := s.Hostname; got != tt.wantHostname {
				t.Errorf("Hostname = %q, want %q", got, tt.wantHostname)
			}
		})
	}
}
