package ocispec

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestCapabilities(t *testing.T) {
	defaults := []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
		"CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP",
	}
	tests := []struct {
		name          string
		caps          *runtimeapi.Capability
		privileged    bool
		host          []string
		want, ambient []string
		wantErr       string
	}{
		{name: "defaults", want: defaults},
		{name: "add without prefix, drop with", caps: &runtimeapi.Capability{AddCapabilities: []string{"net_admin"}, DropCapabilities: []string{"CAP_NET_RAW", "mknod"}},
			want: []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
				"CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE", "CAP_SETFCAP"}},
		{name: "drop ALL add one", caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"}},
			want: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "drop all lower case", caps: &runtimeapi.Capability{DropCapabilities: []string{"all"}}, want: nil},
		{name: "add ALL drop one", caps: &runtimeapi.Capability{AddCapabilities: []string{"ALL"}, DropCapabilities: []string{"SYS_ADMIN"}},
			want: slices.DeleteFunc(slices.Clone(allCaps), func(c string) bool { return c == "CAP_SYS_ADMIN" })},
		{name: "add ALL is bounded by the host's", caps: &runtimeapi.Capability{AddCapabilities: []string{"ALL"}},
			host: []string{"CAP_KILL", "CAP_CHOWN", "CAP_BPF"}, want: []string{"CAP_CHOWN", "CAP_KILL", "CAP_BPF"}},
		{name: "privileged gets all", privileged: true, want: allCaps},
		{name: "privileged gets the host's", privileged: true, host: []string{"CAP_SYS_ADMIN", "CAP_CHOWN"}, want: []string{"CAP_CHOWN", "CAP_SYS_ADMIN"}},
		{name: "privileged ignores drops", privileged: true, caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}, want: allCaps},
		{name: "ambient joins every set", caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddAmbientCapabilities: []string{"NET_BIND_SERVICE"}},
			want: []string{"CAP_NET_BIND_SERVICE"}, ambient: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "ambient and drop conflict", caps: &runtimeapi.Capability{DropCapabilities: []string{"NET_RAW"}, AddAmbientCapabilities: []string{"CAP_NET_RAW"}},
			wantErr: "CAP_NET_RAW is both dropped and added as ambient"},
		{name: "unknown add", caps: &runtimeapi.Capability{AddCapabilities: []string{"CAP_FLY"}},
			wantErr: `security_context.capabilities.add_capabilities: unknown capability "CAP_FLY"`},
		{name: "unknown drop", caps: &runtimeapi.Capability{DropCapabilities: []string{"sys_fly"}},
			wantErr: `security_context.capabilities.drop_capabilities: unknown capability "sys_fly"`},
		{name: "unknown ambient", caps: &runtimeapi.Capability{AddAmbientCapabilities: []string{"X"}},
			wantErr: `add_ambient_capabilities: unknown capability "X"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(t, func(in *ContainerInput) {
				sc(in).Capabilities, sc(in).Privileged = tt.caps, tt.privileged
				in.Sandbox.Privileged = tt.privileged
				in.HostCapabilities = tt.host
			})
			if !checkErr(t, err, tt.wantErr, false) {
				return
			}
			c := s.Process.Capabilities
			// want in capability-number order
			want := ordered(tt.want)
			for set, got := range map[string][]string{"Bounding": c.Bounding, "Effective": c.Effective, "Permitted": c.Permitted} {
				if !slices.Equal(got, want) {
					t.Errorf("%s = %v, want %v", set, got, want)
				}
			}
			for set, got := range map[string][]string{"Inheritable": c.Inheritable, "Ambient": c.Ambient} {
				if !slices.Equal(got, tt.ambient) {
					t.Errorf("%s = %v, want %v", set, got, tt.ambient)
				}
			}
		})
	}
}

func ordered(caps []string) []string {
	var out []string
	for _, c := range allCaps {
		if slices.Contains(caps, c) {
			out = append(out, c)
		}
	}
	return out
}

func TestSeccomp(t *testing.T) {
	tests := []struct {
		name       string
		profile    *runtimeapi.SecurityProfile
		path       string
		privileged bool
		want       string // "" none, "default", "deny-mkdir"
		wantErr    string
		plain      bool
	}{
		{name: "unset is unconfined", want: ""},
		{name: "RuntimeDefault", profile: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, want: "default"},
		{name: "Unconfined", profile: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, want: ""},
		{name: "field wins over deprecated path", profile: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, path: "runtime/default", want: ""},
		{name: "path runtime/default", path: "runtime/default", want: "default"},
		{name: "path docker/default", path: "docker/default", want: "default"},
		{name: "path unconfined", path: "unconfined", want: ""},
		{name: "privileged is unconfined", privileged: true, path: "runtime/default", want: ""},
		{name: "Localhost absolute", profile: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/var/lib/kubelet/seccomp/deny-mkdir.json"}, want: "deny-mkdir"},
		{name: "Localhost relative", profile: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "deny-mkdir.json"}, want: "deny-mkdir"},
		{name: "path localhost/", path: "localhost//var/lib/kubelet/seccomp/deny-mkdir.json", want: "deny-mkdir"},
		{name: "Localhost missing", profile: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "nope.json"},
			wantErr: `localhost profile "/var/lib/kubelet/seccomp/nope.json" does not exist`},
		{name: "Localhost escaping the root", profile: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "../x.json"},
			wantErr: `localhost profile "../x.json" is not an absolute path`},
		{name: "Localhost without ref", profile: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost},
			wantErr: "security_context.seccomp: Localhost profile without localhost_ref"},
		{name: "Localhost bad JSON", profile: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "bad.json"},
			wantErr: `localhost profile "/var/lib/kubelet/seccomp/bad.json"`},
		{name: "unknown type", profile: &runtimeapi.SecurityProfile{ProfileType: 7}, wantErr: "unknown profile type 7"},
		{name: "bad path", path: "foo/bar", wantErr: `security_context.seccomp_profile_path "foo/bar"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(t, func(in *ContainerInput) {
				sc(in).Seccomp, sc(in).SeccompProfilePath, sc(in).Privileged = tt.profile, tt.path, tt.privileged
				in.Sandbox.Privileged = tt.privileged
			})
			if !checkErr(t, err, tt.wantErr, tt.plain) {
				return
			}
			if got := seccompKind(s.Linux.Seccomp); got != tt.want {
				t.Errorf("seccomp = %q, want %q", got, tt.want)
			}
		})
	}
}

// seccompKind names a profile by its shape.
func seccompKind(p *specs.LinuxSeccomp) string {
	switch {
	case p == nil:
		return ""
	case p.DefaultAction == specs.ActErrno && len(p.Syscalls) > 10:
		return "default"
	case p.DefaultAction == specs.ActAllow && len(p.Syscalls) == 1 && slices.Equal(p.Syscalls[0].Names, []string{"mkdir"}):
		return "deny-mkdir"
	}
	return "unexpected"
}

// The default profile allows some syscalls only with the matching
// capability, so it must see the final capability set.
func TestSeccompFollowsCapabilities(t *testing.T) {
	allows := func(p *specs.LinuxSeccomp, name string) bool {
		for _, sc := range p.Syscalls {
			if sc.Action == specs.ActAllow && slices.Contains(sc.Names, name) {
				return true
			}
		}
		return false
	}
	for _, tt := range []struct {
		name string
		add  []string
		want bool
	}{{"without CAP_SYS_ADMIN", nil, false}, {"with CAP_SYS_ADMIN", []string{"SYS_ADMIN"}, true}} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(t, func(in *ContainerInput) {
				sc(in).SeccompProfilePath = "runtime/default"
				sc(in).Capabilities = &runtimeapi.Capability{AddCapabilities: tt.add}
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := allows(s.Linux.Seccomp, "mount"); got != tt.want {
				t.Errorf("default profile allows mount = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAppArmor(t *testing.T) {
	tests := []struct {
		name    string
		profile *runtimeapi.SecurityProfile
		old     string
		enabled bool
		want    string
		wantErr string
	}{
		{name: "unset", want: ""},
		{name: "RuntimeDefault without AppArmor", profile: &runtimeapi.SecurityProfile{}, want: ""},
		{name: "RuntimeDefault with AppArmor", profile: &runtimeapi.SecurityProfile{}, enabled: true, want: ""},
		{name: "Localhost", profile: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "localhost/k8s-nginx"}, enabled: true, want: "k8s-nginx"},
		{name: "deprecated localhost/", old: "localhost/k8s-nginx", enabled: true, want: "k8s-nginx"},
		{name: "Localhost without AppArmor", profile: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "k8s-nginx"},
			wantErr: `security_context.apparmor: localhost profile "k8s-nginx" requested but AppArmor is not enabled`},
		{name: "bad deprecated value", old: "strict", wantErr: `security_context.apparmor_profile "strict"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(t, func(in *ContainerInput) {
				sc(in).Apparmor, sc(in).ApparmorProfile, in.AppArmorEnabled = tt.profile, tt.old, tt.enabled
			})
			if !checkErr(t, err, tt.wantErr, false) {
				return
			}
			if got := s.Process.ApparmorProfile; got != tt.want {
				t.Errorf("ApparmorProfile = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMaskedAndReadonlyPaths(t *testing.T) {
	tests := []struct {
		name               string
		masked, readonly   []string
		privileged         bool
		wantMasked, wantRO []string
		wantErr            string
	}{
		{name: "defaults", wantMasked: defaultMaskedPaths, wantRO: defaultReadonlyPaths},
		{name: "CRI lists override", masked: []string{"/proc/kcore"}, readonly: []string{"/proc/sys"}, wantMasked: []string{"/proc/kcore"}, wantRO: []string{"/proc/sys"}},
		{name: "one list overridden", masked: []string{"/proc/keys"}, wantMasked: []string{"/proc/keys"}, wantRO: defaultReadonlyPaths},
		{name: "privileged has none", privileged: true, masked: []string{"/proc/keys"}},
		{name: "relative masked path", masked: []string{"proc/keys"}, wantErr: `security_context.masked_paths[0] "proc/keys"`},
		{name: "relative readonly path", readonly: []string{"/a", "b"}, wantErr: `security_context.readonly_paths[1] "b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(t, func(in *ContainerInput) {
				sc(in).MaskedPaths, sc(in).ReadonlyPaths, sc(in).Privileged = tt.masked, tt.readonly, tt.privileged
				in.Sandbox.Privileged = tt.privileged
			})
			if !checkErr(t, err, tt.wantErr, false) {
				return
			}
			if got := s.Linux.MaskedPaths; !slices.Equal(got, tt.wantMasked) {
				t.Errorf("MaskedPaths = %v, want %v", got, tt.wantMasked)
			}
			if got := s.Linux.ReadonlyPaths; !slices.Equal(got, tt.wantRO) {
				t.Errorf("ReadonlyPaths = %v, want %v", got, tt.wantRO)
			}
		})
	}
}
