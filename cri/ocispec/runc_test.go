package ocispec

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The container test runs the same busybox script under a few security
// contexts. A non-root process keeps capabilities across execve only if
// they are ambient (the kernel recomputes its permitted set from the file's
// capabilities), so "drop ALL, add NET_BIND_SERVICE" shows up in CapEff of
// the shell's children only for root or with the ambient capability.
func TestRuncRunsContainerSpec(t *testing.T) {
	runc := needRunc(t)
	tests := []struct {
		name                        string
		uid                         int64
		ambient                     []string
		wantID, wantUid, wantGroups string
		wantHome, wantEff, wantAmb  string
	}{
		{
			name: "non-root with an ambient capability", uid: 1000, ambient: []string{"NET_BIND_SERVICE"},
			wantID: "uid=1000(app) gid=2000", wantUid: "1000 1000 1000 1000", wantGroups: "2000 3000 4000",
			wantHome: "/home/app", wantEff: "0000000000000400", wantAmb: "0000000000000400",
		},
		{
			name: "non-root without: capabilities stop at execve", uid: 1000,
			wantID: "uid=1000(app) gid=2000", wantUid: "1000 1000 1000 1000", wantGroups: "2000 3000 4000",
			wantHome: "/home/app", wantEff: "0000000000000000", wantAmb: "0000000000000000",
		},
		{
			name: "root keeps the configured set", uid: 0,
			wantID: "uid=0(root) gid=2000", wantUid: "0 0 0 0", wantGroups: "2000 3000",
			wantHome: "/root", wantEff: "0000000000000400", wantAmb: "0000000000000000",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := runBusybox(t, runc, func(in *ContainerInput) {
				sec := in.Config.Linux.SecurityContext
				sec.RunAsUser = int64v(tt.uid)
				sec.Capabilities.AddAmbientCapabilities = tt.ambient
			})
			inh := "0000000000000000"
			if len(tt.ambient) > 0 {
				inh = "0000000000000400"
			}
			for _, c := range []struct{ what, got, want string }{
				{"Uid", statusField(out, "Uid"), tt.wantUid},
				{"Gid", statusField(out, "Gid"), "2000 2000 2000 2000"},
				{"Groups", statusField(out, "Groups"), tt.wantGroups},
				{"NoNewPrivs", statusField(out, "NoNewPrivs"), "1"},
				{"Seccomp", statusField(out, "Seccomp"), "2"},
				{"CapBnd", statusField(out, "CapBnd"), "0000000000000400"},
				{"CapEff", statusField(out, "CapEff"), tt.wantEff},
				{"CapPrm", statusField(out, "CapPrm"), tt.wantEff},
				{"CapAmb", statusField(out, "CapAmb"), tt.wantAmb},
				{"CapInh", statusField(out, "CapInh"), inh},
				{"oom_score_adj", outputLine(out, "oom"), "0"},
				{"rootfs", outputLine(out, "rootfs"), "ro"},
				{"hostname", outputLine(out, "hostname"), "ocispec-test"},
				{"env", outputLine(out, "env"), "bar home=" + tt.wantHome},
			} {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
				}
			}
			if !strings.Contains(out, tt.wantID) {
				t.Errorf("id printed %q, want %s", strings.SplitN(out, "\n", 2)[0], tt.wantID)
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

// runBusybox runs a script printing the process's identity, status and
// surroundings in a busybox container built by ForContainer: run_as_user
// uid, run_as_group 2000, supplemental group 3000, no new privileges,
// RuntimeDefault seccomp, read-only rootfs, drop ALL add NET_BIND_SERVICE,
// oom_score_adj -997 clamped; edit changes that input.
func runBusybox(t *testing.T, runc string, edit func(*ContainerInput)) string {
	t.Helper()
	dir := t.TempDir()
	id := randomID(t, "ocispec-test-")
	parent := "/" + randomID(t, "crisp-ocispec-")
	pod := filepath.Join(dir, "pod")
	writeFile(t, filepath.Join(pod, "hostname"), "ocispec-test\n", 0o644)
	writeFile(t, filepath.Join(pod, "hosts"), "127.0.0.1 localhost\n", 0o644)
	writeFile(t, filepath.Join(pod, "resolv.conf"), "nameserver 127.0.0.1\n", 0o644)
	podNS := &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
	script := `id; echo "hostname=$(cat /etc/hostname)"; cat /proc/self/status; echo "oom=$(cat /proc/self/oom_score_adj)"
if touch /written 2>/dev/null; then echo rootfs=rw; else echo rootfs=ro; fi
echo "env=$FOO home=$HOME"`
	in := ContainerInput{
		ID: id, Name: "app",
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
			Command:  []string{"/bin/sh", "-c", script},
			Envs:     []*runtimeapi.KeyValue{kv("FOO", "bar")},
			Linux: &runtimeapi.LinuxContainerConfig{
				Resources: &runtimeapi.LinuxContainerResources{OomScoreAdj: -997, MemoryLimitInBytes: 64 << 20, CpuShares: 512},
				SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
					RunAsUser: int64v(1000), RunAsGroup: int64v(2000), SupplementalGroups: []int64{3000},
					NoNewPrivs: true, ReadonlyRootfs: true,
					Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
					Capabilities: &runtimeapi.Capability{
						DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"},
					},
					NamespaceOptions: podNS,
				},
			},
		},
		Sandbox: Sandbox{
			ID: "pod", Handler: "runc", RuntimeType: RuntimeRunc, Hostname: "ocispec-test",
			ResolvConf: filepath.Join(pod, "resolv.conf"), Hosts: filepath.Join(pod, "hosts"), HostnameFile: filepath.Join(pod, "hostname"),
			CgroupParent: parent,
			Config: &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{
				SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: podNS},
			}},
		},
		RootfsPath:       busyboxRootfs(t, dir),
		ClampOOMScoreAdj: true,
	}
	edit(&in)
	s, err := ForContainer(in)
	if err != nil {
		t.Fatal(err)
	}
	return runBundle(t, runc, dir, id, s, parent)
}

// A privileged container gets crispd's capabilities (not every one: this
// VM's root lacks CAP_SYS_RESOURCE, and asking runc for it fails the
// start), the host's devices, no seccomp and a writable /sys.
func TestRuncRunsPrivileged(t *testing.T) {
	runc := needRunc(t)
	hostCaps, err := CurrentCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	hostDevs, err := HostDevices()
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	out := runBusybox(t, runc, func(in *ContainerInput) {
		sec := in.Config.Linux.SecurityContext
		sec.Privileged, in.Sandbox.Privileged = true, true
		sec.RunAsUser, sec.RunAsGroup, sec.NoNewPrivs = int64v(0), int64v(0), false
		in.HostCapabilities, in.HostDevices = hostCaps, hostDevs
		in.Config.Command[2] += `; echo "sys=$(grep ' /sys sysfs ' /proc/self/mounts | cut -d' ' -f4 | cut -d, -f1)"; [ -c /dev/null ] && echo null=ok`
	})
	for _, c := range []struct{ what, got, want string }{
		{"CapEff", statusField(out, "CapEff"), statusField(string(self), "CapEff")},
		{"CapBnd", statusField(out, "CapBnd"), statusField(string(self), "CapEff")},
		{"Seccomp", statusField(out, "Seccomp"), "0"},
		{"NoNewPrivs", statusField(out, "NoNewPrivs"), "0"},
		{"sys", outputLine(out, "sys"), "rw"},
		{"null", outputLine(out, "null"), "ok"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// pauseSource stands in for crispd: "pause" prints what the infra spec set
// up and exits, so the test need not kill it.
const pauseSource = `package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	if len(os.Args) != 2 || os.Args[1] != "pause" {
		os.Exit(2)
	}
	host, _ := os.Hostname()
	fmt.Printf("hostname=%s\nuid=%d\n", host, os.Getuid())
	for _, f := range []string{"net/ipv4/ip_unprivileged_port_start", "kernel/shm_rmid_forced"} {
		b, err := os.ReadFile("/proc/sys/" + f)
		fmt.Printf("%s=%s%v\n", f, strings.TrimSpace(string(b)), err)
	}
	st, _ := os.ReadFile("/proc/self/status")
	fmt.Print(string(st))
}
`

func TestRuncRunsInfraSpec(t *testing.T) {
	runc := needRunc(t)
	goTool, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run this test, and it needs the go tool to build a static stand-in for crispd")
		}
		t.Skip("SKIPPED: needs the go tool to build a static stand-in for crispd")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeFile(t, filepath.Join(src, "go.mod"), "module pause\n\ngo 1.22\n", 0o644)
	writeFile(t, filepath.Join(src, "main.go"), pauseSource, 0o644)
	crispd := filepath.Join(dir, "crispd")
	build := exec.Command(goTool, "build", "-o", crispd, ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build stand-in crispd: %v\n%s", err, out)
	}
	rootfs := filepath.Join(dir, "infra-rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	id := randomID(t, "ocispec-infra-")
	parent := "/" + randomID(t, "crisp-ocispec-")
	s, err := ForSandboxInfra(InfraInput{
		Sandbox: Sandbox{
			ID: "pod", InfraID: id, RuntimeType: RuntimeRunc, Hostname: "infra-test", CgroupParent: parent,
			Config: &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{
				Sysctls:         map[string]string{"net.ipv4.ip_unprivileged_port_start": "80", "kernel.shm_rmid_forced": "1"},
				SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{RunAsUser: int64v(65534), RunAsGroup: int64v(65534)},
			}},
		},
		RootfsPath: rootfs, CrispdPath: crispd, ClampOOMScoreAdj: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	out := runBundle(t, runc, dir, id, s, parent)
	for _, c := range []struct{ what, got, want string }{
		{"hostname", outputLine(out, "hostname"), "infra-test"},
		{"uid", outputLine(out, "uid"), "65534"},
		{"net sysctl", outputLine(out, "net/ipv4/ip_unprivileged_port_start"), "80<nil>"},
		{"ipc sysctl", outputLine(out, "kernel/shm_rmid_forced"), "1<nil>"},
		{"CapEff", statusField(out, "CapEff"), "0000000000000000"},
		{"NoNewPrivs", statusField(out, "NoNewPrivs"), "1"},
		{"Seccomp", statusField(out, "Seccomp"), "2"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}
