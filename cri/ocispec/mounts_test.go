package ocispec

import (
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// mountLine renders a mount compactly for comparisons.
func mountLine(m specs.Mount) string {
	return m.Destination + " " + m.Type + " " + m.Source + " " + strings.Join(m.Options, ",")
}

func findMount(ms []specs.Mount, dst string) string {
	for _, m := range ms {
		if m.Destination == dst {
			return mountLine(m)
		}
	}
	return ""
}

func TestDefaultMounts(t *testing.T) {
	tests := []struct {
		name                 string
		privileged, readonly bool
		shm                  string
		want                 []string
	}{
		{
			name: "unprivileged with the pod's shm", shm: "/run/crisp/pods/pod1/shm",
			want: []string{
				"/proc proc proc nosuid,noexec,nodev",
				"/dev tmpfs tmpfs nosuid,strictatime,mode=755,size=65536k",
				"/sys sysfs sysfs nosuid,noexec,nodev,ro",
				"/dev/pts devpts devpts nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5",
				"/dev/mqueue mqueue mqueue nosuid,noexec,nodev",
				"/dev/shm bind /run/crisp/pods/pod1/shm rbind,rprivate,nosuid,noexec,nodev,rw",
				"/etc/resolv.conf bind /run/crisp/pods/pod1/resolv.conf rbind,rprivate,nosuid,nodev,noexec,rw",
				"/etc/hosts bind /run/crisp/pods/pod1/hosts rbind,rprivate,nosuid,nodev,noexec,rw",
				"/etc/hostname bind /run/crisp/pods/pod1/hostname rbind,rprivate,nosuid,nodev,noexec,rw",
				"/sys/fs/cgroup cgroup cgroup nosuid,noexec,nodev,relatime,ro",
			},
		},
		{
			name: "privileged, read-only rootfs, private shm", privileged: true, readonly: true,
			want: []string{
				"/proc proc proc nosuid,noexec,nodev",
				"/dev tmpfs tmpfs nosuid,strictatime,mode=755,size=65536k",
				"/sys sysfs sysfs nosuid,noexec,nodev,rw",
				"/dev/pts devpts devpts nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5",
				"/dev/mqueue mqueue mqueue nosuid,noexec,nodev",
				"/dev/shm tmpfs shm nosuid,noexec,nodev,mode=1777,size=65536k",
				"/etc/resolv.conf bind /run/crisp/pods/pod1/resolv.conf rbind,rprivate,nosuid,nodev,noexec,ro",
				"/etc/hosts bind /run/crisp/pods/pod1/hosts rbind,rprivate,nosuid,nodev,noexec,ro",
				"/etc/hostname bind /run/crisp/pods/pod1/hostname rbind,rprivate,nosuid,nodev,noexec,ro",
				"/sys/fs/cgroup cgroup cgroup nosuid,noexec,nodev,relatime,rw",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(t, func(in *ContainerInput) {
				sc(in).Privileged, sc(in).ReadonlyRootfs = tt.privileged, tt.readonly
				in.Sandbox.Privileged, in.Sandbox.ShmPath = tt.privileged, tt.shm
			})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range s.Mounts {
				got = append(got, mountLine(m))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Mounts =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if s.Root.Readonly != tt.readonly || s.Root.Path != "/var/lib/crisp/rootfs/c0ffee" {
				t.Errorf("Root = %+v, want path /var/lib/crisp/rootfs/c0ffee readonly %v", s.Root, tt.readonly)
			}
		})
	}
}

func TestCRIMounts(t *testing.T) {
	tests := []struct {
		name         string
		mounts       []*runtimeapi.Mount
		privileged   bool
		noPodFiles   bool
		imageVolumes map[int]string
		hostIPC      bool
		want         map[string]string // destination -> mount line ("" = absent)
		wantProp     string
		wantErr      string
	}{
		{
			name: "private read-write and read-only",
			mounts: []*runtimeapi.Mount{
				{ContainerPath: "/data/", HostPath: "/var/lib/kubelet/pods/u/volumes/data"},
				{ContainerPath: "/config", HostPath: "/var/lib/kubelet/cfg", Readonly: true, SelinuxRelabel: true},
			},
			want: map[string]string{
				"/data":   "/data bind /var/lib/kubelet/pods/u/volumes/data rbind,rprivate,rw",
				"/config": "/config bind /var/lib/kubelet/cfg rbind,rprivate,ro",
			},
		},
		{
			name:     "host-to-container needs a slave rootfs",
			mounts:   []*runtimeapi.Mount{{ContainerPath: "/mnt", HostPath: "/mnt", Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}},
			want:     map[string]string{"/mnt": "/mnt bind /mnt rbind,rslave,rw"},
			wantProp: "rslave",
		},
		{
			name: "bidirectional needs a shared rootfs", privileged: true,
			mounts: []*runtimeapi.Mount{
				{ContainerPath: "/a", HostPath: "/a", Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL},
				{ContainerPath: "/b", HostPath: "/b", Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
			},
			want:     map[string]string{"/a": "/a bind /a rbind,rshared,rw", "/b": "/b bind /b rbind,rslave,rw"},
			wantProp: "rshared",
		},
		{
			name:   "recursive read-only and mount options",
			mounts: []*runtimeapi.Mount{{ContainerPath: "/ro", HostPath: "/srv", Readonly: true, RecursiveReadOnly: true, MountOptions: []string{"noexec", "nosuid"}}},
			want:   map[string]string{"/ro": "/ro bind /srv rbind,rprivate,ro,rro,noexec,nosuid"},
		},
		{
			name: "CRI mounts replace the pod files and /dev/shm",
			mounts: []*runtimeapi.Mount{
				{ContainerPath: "/etc/hosts", HostPath: "/var/lib/kubelet/pods/u/etc-hosts"},
				{ContainerPath: "/dev/shm", HostPath: "/dev/shm"},
			},
			want: map[string]string{
				"/etc/hosts":       "/etc/hosts bind /var/lib/kubelet/pods/u/etc-hosts rbind,rprivate,rw",
				"/dev/shm":         "/dev/shm bind /dev/shm rbind,rprivate,rw",
				"/etc/resolv.conf": "/etc/resolv.conf bind /run/crisp/pods/pod1/resolv.conf rbind,rprivate,nosuid,nodev,noexec,rw",
			},
		},
		{
			name: "host IPC gets the host's /dev/shm", hostIPC: true,
			want: map[string]string{"/dev/shm": "/dev/shm bind /dev/shm rbind,rprivate,nosuid,noexec,nodev,rw"},
		},
		{
			name: "pod without files", noPodFiles: true,
			want: map[string]string{"/etc/hosts": "", "/etc/resolv.conf": "", "/etc/hostname": ""},
		},
		{
			name:         "image volume bound read-only whatever was asked",
			mounts:       []*runtimeapi.Mount{{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: "busybox"}, ImageSubPath: "etc"}},
			imageVolumes: map[int]string{0: "/s/overlay/l/merged/etc"},
			want:         map[string]string{"/img": "/img bind /s/overlay/l/merged/etc rbind,rprivate,ro,nosuid,nodev"},
		},
		{
			name:         "image volume with a host path",
			mounts:       []*runtimeapi.Mount{{ContainerPath: "/img", HostPath: "/x", Image: &runtimeapi.ImageSpec{Image: "busybox"}}},
			imageVolumes: map[int]string{0: "/m"},
			wantErr:      `mounts[0]: host_path "/x" and an image are both set`,
		},
		{
			name:         "image sub path absolute",
			mounts:       []*runtimeapi.Mount{{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: "busybox"}, ImageSubPath: "/etc"}},
			imageVolumes: map[int]string{0: "/m"},
			wantErr:      `mounts[0].image_sub_path "/etc" must be relative, without '..'`,
		},
		{
			name:         "image sub path climbing",
			mounts:       []*runtimeapi.Mount{{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: "busybox"}, ImageSubPath: "etc/../../x"}},
			imageVolumes: map[int]string{0: "/m"},
			wantErr:      `mounts[0].image_sub_path "etc/../../x" must be relative, without '..'`,
		},
		{
			name: "image volume shared", imageVolumes: map[int]string{0: "/m"},
			mounts: []*runtimeapi.Mount{{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: "busybox"},
				Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}},
			wantErr: "mounts[0].propagation: an image volume is private",
		},
		{
			name:    "image sub path without an image",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/x", ImageSubPath: "etc"}},
			wantErr: "mounts[0].image_sub_path is set without an image",
		},
		{name: "NUL in host path", mounts: []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/x\x00y"}}, wantErr: "mounts[0]: a path has a NUL byte"},
		{name: "relative container path", mounts: []*runtimeapi.Mount{{ContainerPath: "data", HostPath: "/x"}}, wantErr: `mounts[0].container_path "data" is not absolute`},
		{name: "mount over root", mounts: []*runtimeapi.Mount{{ContainerPath: "/.", HostPath: "/x"}}, wantErr: "mounts[0].container_path is the root"},
		{name: "relative host path", mounts: []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "x"}}, wantErr: `mounts[0].host_path "x" is not absolute`},
		{name: "empty host path", mounts: []*runtimeapi.Mount{{ContainerPath: "/data"}}, wantErr: `mounts[0].host_path "" is not absolute`},
		{
			name:    "same destination twice",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/x"}, {ContainerPath: "/d/", HostPath: "/y"}},
			wantErr: `mounts[1].container_path "/d" is mounted twice`,
		},
		{
			name:    "bidirectional unprivileged",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: "/a", Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}},
			wantErr: "mounts[0].propagation: bidirectional propagation needs a privileged container",
		},
		{name: "unknown propagation", mounts: []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: "/a", Propagation: 5}}, wantErr: "mounts[0].propagation: unknown mode 5"},
		{
			name:    "rro without ro",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: "/a", RecursiveReadOnly: true}},
			wantErr: "mounts[0].recursive_read_only needs readonly and private propagation",
		},
		{
			name:    "rro with slave propagation",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: "/a", Readonly: true, RecursiveReadOnly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}},
			wantErr: "mounts[0].recursive_read_only",
		},
		{
			name:    "mount option not allowed",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: "/a", MountOptions: []string{"suid"}}},
			wantErr: `mounts[0].mount_options[0] "suid" is not one of noexec, nodev, nosuid`,
		},
		{
			name:    "id-mapped mount",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: "/a", UidMappings: []*runtimeapi.IDMapping{{HostId: 1, Length: 1}}}},
			wantErr: "mounts[0]: id-mapped mounts are not supported",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(t, func(in *ContainerInput) {
				in.Config.Mounts = tt.mounts
				in.ImageVolumes = tt.imageVolumes
				sc(in).Privileged, in.Sandbox.Privileged = tt.privileged, tt.privileged
				if tt.hostIPC {
					in.Sandbox.ShmPath = ""
					in.Sandbox.Config.Linux.SecurityContext.NamespaceOptions.Ipc = runtimeapi.NamespaceMode_NODE
				}
				if tt.noPodFiles {
					in.Sandbox.ResolvConf, in.Sandbox.Hosts, in.Sandbox.HostnameFile = "", "", ""
				}
			})
			if !checkErr(t, err, tt.wantErr, false) {
				return
			}
			for dst, want := range tt.want {
				if got := findMount(s.Mounts, dst); got != want {
					t.Errorf("mount at %s = %q, want %q", dst, got, want)
				}
			}
			if got := s.Linux.RootfsPropagation; got != tt.wantProp {
				t.Errorf("RootfsPropagation = %q, want %q", got, tt.wantProp)
			}
		})
	}
}

// A volume at /a/b must be mounted after one at /a, or /a hides it.
func TestMountOrder(t *testing.T) {
	s, err := buildSpec(t, func(in *ContainerInput) {
		in.Config.Mounts = []*runtimeapi.Mount{
			{ContainerPath: "/a/b/c", HostPath: "/x"},
			{ContainerPath: "/a", HostPath: "/y"},
			{ContainerPath: "/a/b", HostPath: "/z"},
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range s.Mounts {
		if strings.HasPrefix(m.Destination, "/a") {
			got = append(got, m.Destination)
		}
	}
	if want := []string{"/a", "/a/b", "/a/b/c"}; !slices.Equal(got, want) {
		t.Errorf("mount order = %v, want %v", got, want)
	}
}
