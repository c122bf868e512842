package validate

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/ocispec"
)

// fakeNode is a host with a few paths: what kubelet's requests below name.
type fakeNode map[string]fs.FileMode

func (n fakeNode) stat(p string) (fs.FileInfo, error) {
	if strings.ContainsRune(p, 0) {
		return nil, &fs.PathError{Op: "stat", Path: p, Err: errors.New("invalid argument")}
	}
	m, ok := n[p]
	if !ok {
		return nil, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
	}
	return fakeInfo{name: p, mode: m}, nil
}

type fakeInfo struct {
	name string
	mode fs.FileMode
}

func (f fakeInfo) Name() string       { return f.name }
func (f fakeInfo) Size() int64        { return 0 }
func (f fakeInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fakeInfo) Sys() any           { return nil }

const podUID = "6d7c1f0e-93a4-4c55-8f5e-3c2f7f6b1a20"

var testNode = fakeNode{
	"/var/lib/kubelet/pods/" + podUID + "/volumes/kubernetes.io~projected/kube-api-access-x": fs.ModeDir | 0o755,
	"/var/lib/kubelet/pods/" + podUID + "/etc-hosts":                                         0o644,
	"/var/lib/kubelet/pods/" + podUID + "/containers/app/4c1d2e3f":                           0o644,
	"/dev/fuse": fs.ModeDevice | fs.ModeCharDevice | 0o666,
	"/etc":      fs.ModeDir | 0o755,
}

func newTestValidator() *Validator { return New(DefaultLimits(), testNode.stat) }

// kubeletPod is a RunPodSandbox request as kubelet v1.3x sends it for a
// Burstable pod: every field kubelet fills in for such a pod.
func kubeletPod() *runtimeapi.RunPodSandboxRequest {
	return &runtimeapi.RunPodSandboxRequest{
		Config: &runtimeapi.PodSandboxConfig{
			Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web-7d9f8b6c5-x2x4z", Namespace: "default", Uid: podUID, Attempt: 0},
			Hostname:     "web-7d9f8b6c5-x2x4z",
			LogDirectory: "/var/log/pods/default_web-7d9f8b6c5-x2x4z_" + podUID,
			DnsConfig: &runtimeapi.DNSConfig{
				Servers:  []string{"10.96.0.10"},
				Searches: []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"},
				Options:  []string{"ndots:5"},
			},
			PortMappings: []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8080, HostPort: 30080, HostIp: "0.0.0.0"}},
			Labels: map[string]string{
				"io.kubernetes.pod.name": "web-7d9f8b6c5-x2x4z", "io.kubernetes.pod.namespace": "default",
				"io.kubernetes.pod.uid": podUID, "app": "web", "pod-template-hash": "7d9f8b6c5",
			},
			Annotations: map[string]string{
				"kubernetes.io/config.seen": "2026-12-05T09:00:00.000000000Z", "kubernetes.io/config.source": "api",
			},
			Linux: &runtimeapi.LinuxPodSandboxConfig{
				CgroupParent: "/kubepods/burstable/pod" + podUID,
				SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
					NamespaceOptions:   &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD},
					Seccomp:            &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
					RunAsUser:          &runtimeapi.Int64Value{Value: 1000},
					RunAsGroup:         &runtimeapi.Int64Value{Value: 1000},
					SupplementalGroups: []int64{2000},
				},
				Sysctls:  map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shm_rmid_forced": "1"},
				Overhead: &runtimeapi.LinuxContainerResources{},
				Resources: &runtimeapi.LinuxContainerResources{
					CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 256 << 20,
					HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB"}, {PageSize: "1GB"}},
				},
			},
		},
	}
}

// kubeletContainer is a CreateContainer request as kubelet sends it: the
// service-account, hosts and termination-log mounts, env, resources with
// hugepage limits for every page size, the default masked and read-only
// paths, RuntimeDefault seccomp.
func kubeletContainer() *runtimeapi.CreateContainerRequest {
	pod := kubeletPod().Config
	kubelet := "/var/lib/kubelet/pods/" + podUID
	return &runtimeapi.CreateContainerRequest{
		PodSandboxId: "0f3e5c9d2a7b4e1f8c6d0a9b3e2f1c4d5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d",
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "app", Attempt: 1},
			Image: &runtimeapi.ImageSpec{Image: "sha256:0cfdb5b3a3b1f1c2", UserSpecifiedImage: "registry.example/app:1.0",
				Annotations: map[string]string{"io.kubernetes.cri.image.pinned": "false"}},
			Command:    []string{"/bin/app"},
			Args:       []string{"--port=8080"},
			WorkingDir: "/srv",
			Envs: []*runtimeapi.KeyValue{
				{Key: "KUBERNETES_SERVICE_HOST", Value: []byte("10.96.0.1")}, {Key: "KUBERNETES_SERVICE_PORT", Value: []byte("443")},
				{Key: "MESSAGE", Value: []byte("multi\nline values are fine")},
			},
			Mounts: []*runtimeapi.Mount{
				{ContainerPath: "/var/run/secrets/kubernetes.io/serviceaccount", HostPath: kubelet + "/volumes/kubernetes.io~projected/kube-api-access-x", Readonly: true},
				{ContainerPath: "/etc/hosts", HostPath: kubelet + "/etc-hosts"},
				{ContainerPath: "/dev/termination-log", HostPath: kubelet + "/containers/app/4c1d2e3f"},
			},
			Devices: []*runtimeapi.Device{{ContainerPath: "/dev/fuse", HostPath: "/dev/fuse", Permissions: "rw"}},
			Labels: map[string]string{
				"io.kubernetes.container.name": "app", "io.kubernetes.pod.name": pod.Metadata.Name,
				"io.kubernetes.pod.namespace": "default", "io.kubernetes.pod.uid": podUID,
			},
			Annotations: map[string]string{
				"io.kubernetes.container.hash": "8d5e2c1a", "io.kubernetes.container.restartCount": "1",
				"io.kubernetes.container.terminationMessagePath":   "/dev/termination-log",
				"io.kubernetes.container.terminationMessagePolicy": "File", "io.kubernetes.pod.terminationGracePeriod": "30",
			},
			LogPath: "app/1.log",
			Linux: &runtimeapi.LinuxContainerConfig{
				Resources: &runtimeapi.LinuxContainerResources{
					CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 256 << 20, OomScoreAdj: 968,
					HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB"}, {PageSize: "1GB"}},
					Unified:        map[string]string{"memory.high": "max"},
				},
				SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
					Capabilities:     &runtimeapi.Capability{AddCapabilities: []string{"NET_ADMIN"}, DropCapabilities: []string{"MKNOD"}},
					NamespaceOptions: pod.Linux.SecurityContext.NamespaceOptions,
					RunAsUser:        &runtimeapi.Int64Value{Value: 1000},
					RunAsGroup:       &runtimeapi.Int64Value{Value: 1000},
					MaskedPaths:      []string{"/proc/acpi", "/proc/kcore", "/proc/keys", "/sys/firmware"},
					ReadonlyPaths:    []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
					Seccomp:          &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
					NoNewPrivs:       true,
				},
			},
		},
		SandboxConfig: pod,
	}
}

// wantInvalid fails unless err is a validation error naming every want.
func wantInvalid(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want an error naming %q", want)
	}
	if !errors.Is(err, ErrInvalid) && !errors.Is(err, ocispec.ErrInvalid) && !errors.Is(err, ocispec.ErrUnsupported) {
		t.Errorf("error %q wraps none of ErrInvalid, ocispec.ErrInvalid, ocispec.ErrUnsupported", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
}
