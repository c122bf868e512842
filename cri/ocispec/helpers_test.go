package ocispec

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const testPasswd = `root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:App:/home/app:/bin/sh
broken line
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
`

const testGroup = `root:x:0:
daemon:x:1:
app:x:1000:
audio:x:29:app,other
video:x:44:other
staff:x:50: app
nogroup:x:65534:
`

// testRootfs is an image rootfs with users and groups.
func testRootfs() fstest.MapFS {
	return fstest.MapFS{
		"etc/passwd": {Data: []byte(testPasswd)},
		"etc/group":  {Data: []byte(testGroup)},
	}
}

// testDevices is what the fake StatDevice knows.
var testDevices = map[string]specs.LinuxDevice{
	"/dev/fuse":  {Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229},
	"/dev/loop0": {Path: "/dev/loop0", Type: "b", Major: 7, Minor: 0},
}

func fakeStat(p string) (specs.LinuxDevice, error) {
	if d, ok := testDevices[p]; ok {
		return d, nil
	}
	if p == "/etc/passwd" {
		return specs.LinuxDevice{}, fmt.Errorf("/etc/passwd is not a device node: %w", ErrInvalid)
	}
	return specs.LinuxDevice{}, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
}

// testInput is a plain container of a pod with its own network namespace
// and no infra (a drop-infra runc pod with pinned IPC and UTS).
func testInput() ContainerInput {
	return ContainerInput{
		ID:   "c0ffee",
		Name: "k8s_app_web_default_uid_0",
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
			Image:    &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:latest"},
			Linux: &runtimeapi.LinuxContainerConfig{
				SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
					NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
				},
			},
		},
		Sandbox: Sandbox{
			ID: "pod1", Handler: "runc", RuntimeType: RuntimeRunc,
			NetNSPath: "/run/crisp/netns/pod1", IPCNSPath: "/run/crisp/pods/pod1/ipcns", UTSNSPath: "/run/crisp/pods/pod1/utsns",
			Hostname:   "web",
			ResolvConf: "/run/crisp/pods/pod1/resolv.conf", Hosts: "/run/crisp/pods/pod1/hosts", HostnameFile: "/run/crisp/pods/pod1/hostname",
			ShmPath:      "/run/crisp/pods/pod1/shm",
			CgroupParent: "/kubepods/besteffort/poduid",
			Config: &runtimeapi.PodSandboxConfig{
				Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "uid"},
				Hostname: "web",
				Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
					NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
				}},
			},
		},
		Image: &imgspecv1.Image{Config: imgspecv1.ImageConfig{
			Entrypoint: []string{"/entry"}, Cmd: []string{"serve"}, Env: []string{"PATH=/bin", "A=image"}, WorkingDir: "/srv",
		}},
		RootfsPath:         "/var/lib/crisp/rootfs/c0ffee",
		Rootfs:             testRootfs(),
		SeccompProfileRoot: "/var/lib/kubelet/seccomp",
		StatDevice:         fakeStat,
		ReadFile: func(p string) ([]byte, error) {
			if p == "/var/lib/kubelet/seccomp/deny-mkdir.json" {
				return []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}`), nil
			}
			if p == "/var/lib/kubelet/seccomp/bad.json" {
				return []byte(`{"defaultAction":`), nil
			}
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		},
	}
}

// sc returns the test input's container security context.
func sc(in *ContainerInput) *runtimeapi.LinuxContainerSecurityContext {
	return in.Config.Linux.SecurityContext
}

// buildSpec runs ForContainer on the test input changed by edit.
func buildSpec(t *testing.T, edit func(*ContainerInput)) (*specs.Spec, error) {
	t.Helper()
	in := testInput()
	if edit != nil {
		edit(&in)
	}
	return ForContainer(in)
}

// checkErr compares an error with the substring wanted ("" = no error);
// every error wanted must wrap ErrInvalid unless plain is set.
func checkErr(t *testing.T, err error, want string, plain bool) bool {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("err = %v, want nil", err)
	case want != "" && err == nil:
		t.Fatalf("err = nil, want one containing %q", want)
	case want != "":
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, want it to contain %q", err, want)
		}
		if !plain && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) {
			t.Errorf("err = %v, want it to wrap ErrInvalid or ErrUnsupported", err)
		}
		return false
	}
	return true
}

func int64v(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }
