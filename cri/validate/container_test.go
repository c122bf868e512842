package validate

import (
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCreateContainer: kubelet's container passes; each malformed field is
// refused with the field named. The class column is docs/malformed-input.md's.
func TestCreateContainer(t *testing.T) {
	v := newTestValidator()
	if err := v.CreateContainer(kubeletContainer()); err != nil {
		t.Fatalf("kubelet's container refused: %v", err)
	}
	for _, tt := range containerCases() {
		t.Run(tt.class+"/"+tt.name, func(t *testing.T) {
			r := kubeletContainer()
			tt.edit(r)
			err := v.CreateContainer(r)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantInvalid(t, err, tt.want...)
			if r.GetConfig().GetMetadata().GetName() == "app" && r.PodSandboxId != "" && !strings.Contains(r.PodSandboxId, "/") {
				wantInvalid(t, err, "create container app in pod "+r.PodSandboxId) // the object is named
			}
		})
	}
}

type ctr = runtimeapi.CreateContainerRequest

// containerCase is an edit of kubelet's container and what validation says
// of it.
type containerCase struct {
	class, name string
	edit        func(*ctr)
	want        []string // nil = accepted
}

// containerCases are shared by TestCreateContainer and the fuzz target's
// seeds.
func containerCases() []containerCase {
	res := func(r *ctr) *runtimeapi.LinuxContainerResources { return r.Config.Linux.Resources }
	sc := func(r *ctr) *runtimeapi.LinuxContainerSecurityContext { return r.Config.Linux.SecurityContext }
	return []containerCase{
		{"missing", "no pod id", func(r *ctr) { r.PodSandboxId = "" }, []string{"pod_sandbox_id is empty"}},
		{"id", "pod id with slash", func(r *ctr) { r.PodSandboxId = "../../x" }, []string{"pod_sandbox_id", "not an id"}},
		{"missing", "no config", func(r *ctr) { r.Config = nil }, []string{"config is missing"}},
		{"missing", "no metadata", func(r *ctr) { r.Config.Metadata = nil }, []string{"config.metadata is missing"}},
		{"name", "name with slash", func(r *ctr) { r.Config.Metadata.Name = "a/b" }, []string{"metadata.name"}},
		{"missing", "no image", func(r *ctr) { r.Config.Image = nil }, []string{"image.image is empty"}},
		{"white-space", "image with space", func(r *ctr) { r.Config.Image.Image = "busybox latest" }, []string{"image.image", "white space"}},
		{"nul", "NUL in image", func(r *ctr) { r.Config.Image.Image = "busybox\x00" }, []string{"image.image", "NUL"}},
		{"missing", "empty command word", func(r *ctr) { r.Config.Command = []string{"", "x"} }, []string{"command[0] is empty"}},
		{"nul", "NUL in an arg", func(r *ctr) { r.Config.Args = []string{"a\x00b"} }, []string{"args[0]", "NUL"}},
		{"too-long", "argument over 128 KiB", func(r *ctr) { r.Config.Args = []string{strings.Repeat("a", 128<<10+1)} }, []string{"args[0]", "more than"}},
		{"too-big", "process over 1 MiB", func(r *ctr) {
			for range 9 {
				r.Config.Args = append(r.Config.Args, strings.Repeat("a", 120<<10))
			}
		}, []string{"command, args and envs", "more than"}},
		{"too-many", "4097 args", func(r *ctr) { r.Config.Args = make([]string, 4097) }, []string{"command and args", "more than 4096"}},
		{"too-many", "8193 envs", func(r *ctr) {
			for range 8193 {
				r.Config.Envs = append(r.Config.Envs, &runtimeapi.KeyValue{Key: "K"})
			}
		}, []string{"envs has 8196 entries"}},
		{"missing", "empty env key", func(r *ctr) { r.Config.Envs[0].Key = "" }, []string{"envs[0].key"}},
		{"format", "env key with =", func(r *ctr) { r.Config.Envs[0].Key = "A=B" }, []string{"envs[0].key"}},
		{"nul", "NUL in env value", func(r *ctr) { r.Config.Envs[0].Value = []byte("a\x00") }, []string{"envs[0]", "NUL"}},
		{"missing", "nil env", func(r *ctr) { r.Config.Envs = append(r.Config.Envs, nil) }, []string{"envs[3] is empty"}},
		{"relative-path", "relative working dir", func(r *ctr) { r.Config.WorkingDir = "srv" }, []string{"working_dir", "not absolute"}},
		{"nul", "NUL in working dir", func(r *ctr) { r.Config.WorkingDir = "/srv\x00" }, []string{"working_dir", "NUL"}},
		{"relative-path", "relative mount target", func(r *ctr) { r.Config.Mounts[0].ContainerPath = "data" }, []string{"mounts[0].container_path", "not an absolute path"}},
		{"relative-path", "relative mount source", func(r *ctr) { r.Config.Mounts[0].HostPath = "data" }, []string{"mounts[0].host_path", "not an absolute path"}},
		{"missing", "empty mount source", func(r *ctr) { r.Config.Mounts[0].HostPath = "" }, []string{"mounts[0].host_path"}},
		{"dotdot", "mount source with ..", func(r *ctr) { r.Config.Mounts[0].HostPath = "/var/lib/kubelet/../../etc" }, []string{"mounts[0].host_path", "'..'"}},
		{"nul", "NUL in mount target", func(r *ctr) { r.Config.Mounts[1].ContainerPath = "/etc/\x00hosts" }, []string{"mounts[1].container_path", "NUL"}},
		{"host-path", "missing mount source", func(r *ctr) { r.Config.Mounts[0].HostPath = "/var/lib/kubelet/nope" }, []string{"mounts[0].host_path", "does not exist on the host"}},
		{"unknown-enum", "propagation 8", func(r *ctr) { r.Config.Mounts[0].Propagation = 8 }, []string{"mounts[0].propagation"}},
		{"privilege", "bidirectional unprivileged", func(r *ctr) {
			r.Config.Mounts[0].Propagation = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
		}, []string{"mounts[0].propagation", "privileged"}},
		{"duplicate", "mount target twice", func(r *ctr) { r.Config.Mounts[1].ContainerPath = r.Config.Mounts[0].ContainerPath }, []string{"mounts[1].container_path", "mounted twice"}},
		{"format", "mount option suid", func(r *ctr) { r.Config.Mounts[0].MountOptions = []string{"suid"} }, []string{"mount_options[0]"}},
		{"", "image volume", func(r *ctr) {
			r.Config.Mounts = append(r.Config.Mounts, &runtimeapi.Mount{ContainerPath: "/data", Image: &runtimeapi.ImageSpec{Image: "busybox"}, ImageSubPath: "etc", Readonly: true})
		}, nil},
		{"dotdot", "image volume sub path with ..", func(r *ctr) {
			r.Config.Mounts = append(r.Config.Mounts, &runtimeapi.Mount{ContainerPath: "/data", Image: &runtimeapi.ImageSpec{Image: "busybox"}, ImageSubPath: "a/../../b"})
		}, []string{"mounts[3].image_sub_path", "'..'"}},
		{"format", "image volume with a host path", func(r *ctr) {
			r.Config.Mounts = append(r.Config.Mounts, &runtimeapi.Mount{ContainerPath: "/data", HostPath: "/etc", Image: &runtimeapi.ImageSpec{Image: "busybox"}})
		}, []string{"mounts[3].host_path", "image"}},
		{"white-space", "image volume image with a newline", func(r *ctr) {
			r.Config.Mounts = append(r.Config.Mounts, &runtimeapi.Mount{ContainerPath: "/data", Image: &runtimeapi.ImageSpec{Image: "busybox\nx"}})
		}, []string{"mounts[3].image.image"}},
		{"unsupported", "id-mapped mount", func(r *ctr) {
			r.Config.Mounts[0].UidMappings = []*runtimeapi.IDMapping{{HostId: 1000, Length: 1}}
		}, []string{"id-mapped"}},
		{"too-many", "1025 mounts", func(r *ctr) {
			for range 1025 {
				r.Config.Mounts = append(r.Config.Mounts, &runtimeapi.Mount{ContainerPath: "/x", HostPath: "/etc"})
			}
		}, []string{"mounts has 1028 entries"}},
		{"host-path", "missing device", func(r *ctr) { r.Config.Devices[0].HostPath = "/dev/nope" }, []string{"devices[0].host_path", "does not exist on the host"}},
		{"host-path", "device that is not a device", func(r *ctr) { r.Config.Devices[0].HostPath = "/etc" }, []string{"devices[0].host_path", "not a device node"}},
		{"format", "device permissions x", func(r *ctr) { r.Config.Devices[0].Permissions = "rwx" }, []string{"devices[0].permissions"}},
		{"relative-path", "relative device target", func(r *ctr) { r.Config.Devices[0].ContainerPath = "dev/fuse" }, []string{"devices[0].container_path"}},
		{"unsupported", "CDI device", func(r *ctr) { r.Config.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.com/gpu=0"}} }, []string{"CDI_devices are not supported"}},
		{"relative-path", "absolute log path", func(r *ctr) { r.Config.LogPath = "/var/log/app.log" }, []string{"log_path", "absolute"}},
		{"dotdot", "log path with ..", func(r *ctr) { r.Config.LogPath = "../../etc/cron.d/x" }, []string{"log_path", "beneath"}},
		{"nul", "NUL in log path", func(r *ctr) { r.Config.LogPath = "app/\x00.log" }, []string{"log_path", "NUL"}},
		{"missing", "log path '.'", func(r *ctr) { r.Config.LogPath = "./" }, []string{"log_path"}},
		{"nul", "NUL in label", func(r *ctr) { r.Config.Labels["x"] = "\x00" }, []string{`labels["x"]`}},
		{"too-long", "annotation key of 318", func(r *ctr) { r.Config.Annotations[strings.Repeat("k", 318)] = "v" }, []string{"annotations key"}},
		{"out-of-range", "negative cpu shares", func(r *ctr) { res(r).CpuShares = -1 }, []string{"resources.cpu_shares"}},
		{"out-of-range", "cpu period 10", func(r *ctr) { res(r).CpuPeriod = 10 }, []string{"resources.cpu_period"}},
		{"out-of-range", "cpu quota 5", func(r *ctr) { res(r).CpuQuota = 5 }, []string{"resources.cpu_quota"}},
		{"out-of-range", "negative memory", func(r *ctr) { res(r).MemoryLimitInBytes = -1 }, []string{"resources.memory_limit_in_bytes"}},
		{"out-of-range", "swap below memory", func(r *ctr) { res(r).MemorySwapLimitInBytes = 1 << 20 }, []string{"memory_swap_limit_in_bytes"}},
		{"out-of-range", "oom score 1001", func(r *ctr) { res(r).OomScoreAdj = 1001 }, []string{"oom_score_adj"}},
		{"format", "hugepage size 2mb", func(r *ctr) { res(r).HugepageLimits[0].PageSize = "2mb" }, []string{"hugepage_limits[0].page_size"}},
		{"format", "cpuset with letters", func(r *ctr) { res(r).CpusetCpus = "0-a" }, []string{"cpuset_cpus"}},
		{"format", "unified key with slash", func(r *ctr) { res(r).Unified = map[string]string{"../memory.max": "1"} }, []string{"unified"}},
		{"line-break", "unified value with newline", func(r *ctr) { res(r).Unified = map[string]string{"memory.max": "1\n2"} }, []string{"unified"}},
		{"format", "unknown capability", func(r *ctr) { sc(r).Capabilities.AddCapabilities = []string{"CAP_ROOT"} }, []string{"add_capabilities", "unknown capability"}},
		{"relative-path", "relative masked path", func(r *ctr) { sc(r).MaskedPaths = []string{"proc/kcore"} }, []string{"masked_paths[0]"}},
		{"out-of-range", "negative run_as_user", func(r *ctr) { sc(r).RunAsUser.Value = -7 }, []string{"run_as_user"}},
		{"missing", "run_as_group alone", func(r *ctr) { sc(r).RunAsUser = nil }, []string{"run_as_group needs run_as_user"}},
		{"format", "run_as_username with colon", func(r *ctr) { sc(r).RunAsUser, sc(r).RunAsUsername = nil, "a:b" }, []string{"run_as_username"}},
		{"unknown-enum", "seccomp type 7", func(r *ctr) { sc(r).Seccomp.ProfileType = 7 }, []string{"security_context.seccomp"}},
		{"missing", "localhost seccomp without ref", func(r *ctr) {
			sc(r).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost}
		}, []string{"without localhost_ref"}},
		{"relative-path", "relative seccomp profile", func(r *ctr) {
			sc(r).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "../profile.json"}
		}, []string{"localhost profile"}},
		{"host-path", "missing seccomp profile", func(r *ctr) {
			sc(r).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/var/lib/kubelet/seccomp/none.json"}
		}, []string{"localhost profile", "does not exist on the host"}},
		{"unsupported", "AppArmor localhost without AppArmor", func(r *ctr) {
			sc(r).Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "x"}
		}, []string{"apparmor"}},
		{"unknown-enum", "pid mode 6", func(r *ctr) { sc(r).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: 6} }, []string{"namespace_options.pid"}},
		{"missing", "pid TARGET without target", func(r *ctr) {
			sc(r).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET}
		}, []string{"TARGET without target_id"}},
		{"unknown-enum", "stop signal 99", func(r *ctr) { r.Config.StopSignal = 99 }, []string{"stop_signal"}},
		{"too-many", "257 masked paths", func(r *ctr) { sc(r).MaskedPaths = make([]string, 257) }, []string{"masked_paths", "more than 256"}},
		{"", "no command: the image's", func(r *ctr) { r.Config.Command, r.Config.Args = nil, nil }, nil},
		{"", "no linux section", func(r *ctr) { r.Config.Linux = nil }, nil},
		{"", "sandbox config ignored", func(r *ctr) { r.SandboxConfig = &runtimeapi.PodSandboxConfig{Hostname: "\x00"} }, nil},
		{"", "ephemeral container targets another", func(r *ctr) {
			sc(r).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "abc"}
		}, nil},
	}
}
