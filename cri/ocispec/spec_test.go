package ocispec

import (
	"maps"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db/record"
)

func TestForContainerChecks(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*ContainerInput)
		wantErr string
	}{
		{name: "valid", edit: func(*ContainerInput) {}},
		{name: "no config", edit: func(in *ContainerInput) { in.Config = nil }, wantErr: `container "k8s_app_web_default_uid_0": config is missing`},
		{name: "bad id", edit: func(in *ContainerInput) { in.ID = "../x" }, wantErr: `container "app": container id "../x" is not a valid id`},
		{name: "relative rootfs", edit: func(in *ContainerInput) { in.RootfsPath = "rootfs" }, wantErr: `rootfs path "rootfs" is not absolute`},
		{name: "CDI devices", edit: func(in *ContainerInput) { in.Config.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.com/gpu=0"}} }, wantErr: "CDI_devices are not supported"},
		{
			name:    "privileged container in an unprivileged pod",
			edit:    func(in *ContainerInput) { sc(in).Privileged = true },
			wantErr: `container "app": security_context.privileged is set but the pod is not privileged: invalid config`,
		},
		{
			name: "privileged pod config allows it",
			edit: func(in *ContainerInput) {
				sc(in).Privileged = true
				in.Sandbox.Config.Linux.SecurityContext.Privileged = true
			},
		},
		{name: "systemd cgroup parent", edit: func(in *ContainerInput) { in.Sandbox.CgroupParent = "kubepods-besteffort.slice" }, wantErr: `cgroup_parent "kubepods-besteffort.slice" is not an absolute cgroupfs path`},
		{name: "relative pod file", edit: func(in *ContainerInput) { in.Sandbox.Hosts = "hosts" }, wantErr: `pod file "hosts" for /etc/hosts is not absolute`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := buildSpec(t, tt.edit)
			checkErr(t, err, tt.wantErr, false)
		})
	}
}

func TestCgroupsPath(t *testing.T) {
	tests := []struct {
		name           string
		parent, config string
		want           string
	}{
		{name: "sandbox parent", parent: "/kubepods/besteffort/poduid", want: "/kubepods/besteffort/poduid/crisp-c0ffee"},
		{name: "unclean parent", parent: "/kubepods//burstable/pod1/", want: "/kubepods/burstable/pod1/crisp-c0ffee"},
		{name: "parent from the pod config", config: "/kubepods/podx", want: "/kubepods/podx/crisp-c0ffee"},
		{name: "no parent", want: "/crisp/c0ffee"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(t, func(in *ContainerInput) {
				in.Sandbox.CgroupParent = tt.parent
				in.Sandbox.Config.Linux.CgroupParent = tt.config
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Linux.CgroupsPath; got != tt.want {
				t.Errorf("CgroupsPath = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestContainerAnnotations(t *testing.T) {
	std := map[string]string{
		AnnotationContainerType: "container", AnnotationSandboxName: "web", AnnotationSandboxNamespace: "default",
		AnnotationSandboxUID: "uid", AnnotationContainerName: "app", AnnotationImageName: "docker.io/library/busybox:latest",
	}
	with := func(extra map[string]string) map[string]string {
		m := maps.Clone(std)
		maps.Copy(m, extra)
		return m
	}
	tests := []struct {
		name string
		edit func(*ContainerInput)
		want map[string]string
	}{
		{name: "runc", want: with(map[string]string{AnnotationSandboxID: "pod1"})},
		{
			name: "runsc groups by the infra container's id",
			edit: func(in *ContainerInput) {
				in.Sandbox.RuntimeType, in.Sandbox.InfraID, in.Sandbox.InfraPID = RuntimeRunsc, "infra1", 7
			},
			want: with(map[string]string{AnnotationSandboxID: "infra1"}),
		},
		{
			name: "allowed CRI annotations kept, reserved ones dropped, crisp's win",
			edit: func(in *ContainerInput) {
				in.Config.Annotations = map[string]string{
					"a": "1", "io.kubernetes.cri.sandbox-id": "someone-else", "io.kubernetes.cri-o.SandboxID": "x",
					"dev.gvisor.spec.mount.data.share": "pod", "b": "cri", "example.com/x": "2",
				}
				in.Sandbox.Config.Annotations = map[string]string{"pod.example/p": "3", "pod.other/q": "4"}
				in.Passthrough = Passthrough{Pod: []string{"pod.example/*"}, Container: []string{"a", "b", "example.com/*", "io.kubernetes.cri.*"}}
				in.Annotations = map[string]string{"b": "crisp", "io.crisp.pod": "pod1"}
				in.ImageRef, in.LogPath = "sha256:abc", "/var/log/pods/x/app/0.log"
				in.Config.Image.UserSpecifiedImage = "busybox"
			},
			want: with(map[string]string{
				AnnotationSandboxID: "pod1", "a": "1", "b": "crisp", "io.crisp.pod": "pod1", "example.com/x": "2", "pod.example/p": "3",
				AnnotationImageName: "busybox", record.AnnotationImageRef: "sha256:abc", record.AnnotationLogPath: "/var/log/pods/x/app/0.log",
			}),
		},
		{
			name: "no passthrough: no CRI annotation reaches the spec (dev.gvisor.* among them)",
			edit: func(in *ContainerInput) {
				in.Config.Annotations = map[string]string{"a": "1", "dev.gvisor.spec.mount.data.share": "pod"}
				in.Sandbox.Config.Annotations = map[string]string{"dev.gvisor.internal.x": "y"}
				in.Annotations = map[string]string{"io.crisp.pod": "pod1"}
			},
			want: with(map[string]string{AnnotationSandboxID: "pod1", "io.crisp.pod": "pod1", AnnotationImageName: "docker.io/library/busybox:latest"}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(t, tt.edit)
			if err != nil {
				t.Fatal(err)
			}
			got := maps.Clone(s.Annotations)
			for _, k := range recordKeys { // TestSpecCarriesRecord pins them
				delete(got, k)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("Annotations = %v, want %v", got, tt.want)
			}
		})
	}
}

// A complete unprivileged spec: the parts no other test pins.
func TestForContainerWhole(t *testing.T) {
	s, err := buildSpec(t, func(in *ContainerInput) {
		sc(in).NoNewPrivs = true
		sc(in).ReadonlyRootfs = true
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"Version", s.Version, specs.Version},
		{"NoNewPrivileges", s.Process.NoNewPrivileges, true},
		{"Root.Readonly", s.Root.Readonly, true},
		{"Hostname", s.Hostname, "web"},
		{"Sysctl", len(s.Linux.Sysctl), 0},
		{"Seccomp", s.Linux.Seccomp == nil, true},
		{"Args", jsonOf(s.Process.Args), `["/entry","serve"]`},
		{"first device rule", jsonOf(s.Linux.Resources.Devices[0]), `{"allow":false,"access":"rwm"}`},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
}
