package ocispec

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// jsonOf renders v for comparisons of pointer-laden structs.
func jsonOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	return string(b)
}

func TestResources(t *testing.T) {
	tests := []struct {
		name     string
		r        *runtimeapi.LinuxContainerResources
		clamp    bool
		wantCPU  string
		wantMem  string
		wantHuge string
		wantUnif string
		wantOOM  int
		wantErr  string
	}{
		{name: "none", wantCPU: "null", wantMem: "null", wantHuge: "null", wantUnif: "null"},
		{
			name: "guaranteed pod",
			r: &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 64 << 20,
				MemorySwapLimitInBytes: 64 << 20, OomScoreAdj: -997, CpusetCpus: "0-1,3", CpusetMems: "0"},
			wantCPU:  `{"shares":512,"quota":50000,"period":100000,"cpus":"0-1,3","mems":"0"}`,
			wantMem:  `{"limit":67108864,"swap":67108864}`,
			wantHuge: "null", wantUnif: "null", wantOOM: -997,
		},
		{name: "clamped oom_score_adj", r: &runtimeapi.LinuxContainerResources{OomScoreAdj: -997}, clamp: true, wantCPU: "null", wantMem: "null", wantHuge: "null", wantUnif: "null", wantOOM: 0},
		{name: "positive oom_score_adj unclamped", r: &runtimeapi.LinuxContainerResources{OomScoreAdj: 1000}, clamp: true, wantCPU: "null", wantMem: "null", wantHuge: "null", wantUnif: "null", wantOOM: 1000},
		{name: "unlimited quota and swap", r: &runtimeapi.LinuxContainerResources{CpuQuota: -1, MemoryLimitInBytes: 1 << 30, MemorySwapLimitInBytes: -1},
			wantCPU: `{"quota":-1}`, wantMem: `{"limit":1073741824,"swap":-1}`, wantHuge: "null", wantUnif: "null"},
		{name: "unlimited swap without a memory limit", r: &runtimeapi.LinuxContainerResources{MemorySwapLimitInBytes: -1},
			wantCPU: "null", wantMem: "null", wantHuge: "null", wantUnif: "null"},
		{
			name: "hugepages and unified",
			r: &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}},
				Unified: map[string]string{"memory.high": "1000000", "io.weight": "default 100"}},
			wantCPU: "null", wantMem: "null",
			wantHuge: `[{"pageSize":"2MB","limit":2097152}]`,
			wantUnif: `{"io.weight":"default 100","memory.high":"1000000"}`,
		},
		{name: "period too small", r: &runtimeapi.LinuxContainerResources{CpuPeriod: 999}, wantErr: "resources.cpu_period 999 is outside 1000..1000000"},
		{name: "period too big", r: &runtimeapi.LinuxContainerResources{CpuPeriod: 1000001}, wantErr: "resources.cpu_period 1000001"},
		{name: "quota under 1ms", r: &runtimeapi.LinuxContainerResources{CpuQuota: 999}, wantErr: "resources.cpu_quota 999"},
		{name: "negative quota", r: &runtimeapi.LinuxContainerResources{CpuQuota: -2}, wantErr: "resources.cpu_quota -2"},
		{name: "negative shares", r: &runtimeapi.LinuxContainerResources{CpuShares: -1}, wantErr: "resources.cpu_shares -1"},
		{name: "shares too big", r: &runtimeapi.LinuxContainerResources{CpuShares: 262145}, wantErr: "resources.cpu_shares 262145"},
		{name: "negative memory", r: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -1}, wantErr: "resources.memory_limit_in_bytes -1 is negative"},
		{name: "swap below memory", r: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 100 << 20, MemorySwapLimitInBytes: 50 << 20}, wantErr: "resources.memory_swap_limit_in_bytes 52428800 is below"},
		{name: "swap without memory", r: &runtimeapi.LinuxContainerResources{MemorySwapLimitInBytes: 50 << 20}, wantErr: "is set without memory_limit_in_bytes"},
		{name: "swap below -1", r: &runtimeapi.LinuxContainerResources{MemorySwapLimitInBytes: -2}, wantErr: "resources.memory_swap_limit_in_bytes -2"},
		{name: "oom too low", r: &runtimeapi.LinuxContainerResources{OomScoreAdj: -1001}, clamp: true, wantErr: "resources.oom_score_adj -1001"},
		{name: "oom too high", r: &runtimeapi.LinuxContainerResources{OomScoreAdj: 1001}, wantErr: "resources.oom_score_adj 1001"},
		{name: "bad cpuset", r: &runtimeapi.LinuxContainerResources{CpusetCpus: "0-"}, wantErr: `resources.cpuset_cpus "0-"`},
		{name: "reversed cpuset range", r: &runtimeapi.LinuxContainerResources{CpusetMems: "3-1"}, wantErr: `resources.cpuset_mems "3-1"`},
		{name: "bad hugepage size", r: &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2M"}}}, wantErr: `resources.hugepage_limits[0].page_size "2M"`},
		{name: "bad unified key", r: &runtimeapi.LinuxContainerResources{Unified: map[string]string{"../memory.max": "1"}}, wantErr: `resources.unified "../memory.max"`},
		{name: "multi-line unified value", r: &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.max": "1\n2"}}, wantErr: `resources.unified "memory.max"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(t, func(in *ContainerInput) {
				in.Config.Linux.Resources = tt.r
				in.ClampOOMScoreAdj = tt.clamp
			})
			if !checkErr(t, err, tt.wantErr, false) {
				return
			}
			r := s.Linux.Resources
			for _, c := range []struct{ what, got, want string }{
				{"CPU", jsonOf(r.CPU), tt.wantCPU}, {"Memory", jsonOf(r.Memory), tt.wantMem},
				{"HugepageLimits", jsonOf(r.HugepageLimits), tt.wantHuge}, {"Unified", jsonOf(r.Unified), tt.wantUnif},
			} {
				if c.got != c.want {
					t.Errorf("%s = %s, want %s", c.what, c.got, c.want)
				}
			}
			if s.Process.OOMScoreAdj == nil || *s.Process.OOMScoreAdj != tt.wantOOM {
				t.Errorf("OOMScoreAdj = %v, want %d", s.Process.OOMScoreAdj, tt.wantOOM)
			}
		})
	}
}

func TestDevices(t *testing.T) {
	hostDevs := []specs.LinuxDevice{{Path: "/dev/sda", Type: "b", Major: 8, Minor: 0}, {Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}}
	rule := func(typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: &major, Minor: &minor, Access: access}
	}
	base := append([]specs.LinuxDeviceCgroup{denyAll}, defaultDeviceRules()...)
	tests := []struct {
		name       string
		devices    []*runtimeapi.Device
		privileged bool
		noHostDevs bool // the handler's privileged_without_host_devices
		wantDevs   []specs.LinuxDevice
		wantRules  []specs.LinuxDeviceCgroup
		wantErr    string
		plain      bool
	}{
		{name: "none: deny all but the defaults", wantRules: base},
		{
			name: "CRI devices",
			devices: []*runtimeapi.Device{
				{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse", Permissions: "rw"},
				{HostPath: "/dev/loop0", ContainerPath: "/dev/xvda"},
			},
			wantDevs:  []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}, {Path: "/dev/xvda", Type: "b", Major: 7, Minor: 0}},
			wantRules: append(append([]specs.LinuxDeviceCgroup{}, base...), rule("c", 10, 229, "rw"), rule("b", 7, 0, "rwm")),
		},
		{
			name: "privileged: host devices and allow all", privileged: true,
			devices:   []*runtimeapi.Device{{HostPath: "/dev/loop0", ContainerPath: "/dev/fuse", Permissions: "r"}},
			wantDevs:  []specs.LinuxDevice{hostDevs[0], {Path: "/dev/fuse", Type: "b", Major: 7, Minor: 0}},
			wantRules: []specs.LinuxDeviceCgroup{denyAll, {Allow: true, Access: "rwm"}, rule("b", 7, 0, "r")},
		},
		{
			name: "privileged without host devices: the defaults, as unprivileged", privileged: true, noHostDevs: true,
			devices:   []*runtimeapi.Device{{HostPath: "/dev/loop0", ContainerPath: "/dev/xvda", Permissions: "r"}},
			wantDevs:  []specs.LinuxDevice{{Path: "/dev/xvda", Type: "b", Major: 7, Minor: 0}},
			wantRules: append(append([]specs.LinuxDeviceCgroup{}, base...), rule("b", 7, 0, "r")),
		},
		{name: "missing device", devices: []*runtimeapi.Device{{HostPath: "/dev/nope", ContainerPath: "/dev/nope"}}, wantErr: `devices[0].host_path "/dev/nope" does not exist`},
		{name: "not a device", devices: []*runtimeapi.Device{{HostPath: "/etc/passwd", ContainerPath: "/x"}}, wantErr: "devices[0].host_path: /etc/passwd is not a device node"},
		{name: "relative host path", devices: []*runtimeapi.Device{{HostPath: "dev/fuse", ContainerPath: "/dev/fuse"}}, wantErr: `devices[0].host_path "dev/fuse"`},
		{name: "relative container path", devices: []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "fuse"}}, wantErr: `devices[0].container_path "fuse"`},
		{name: "bad permissions", devices: []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse", Permissions: "rx"}}, wantErr: `devices[0].permissions "rx"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(t, func(in *ContainerInput) {
				in.Config.Devices = tt.devices
				sc(in).Privileged, in.Sandbox.Privileged = tt.privileged, tt.privileged
				in.HostDevices = hostDevs
				in.PrivilegedWithoutHostDevices = tt.noHostDevs
			})
			if !checkErr(t, err, tt.wantErr, tt.plain) {
				return
			}
			if got := s.Linux.Devices; !reflect.DeepEqual(got, tt.wantDevs) {
				t.Errorf("Devices = %+v, want %+v", got, tt.wantDevs)
			}
			if got, want := jsonOf(s.Linux.Resources.Devices), jsonOf(tt.wantRules); got != want {
				t.Errorf("device rules = %s, want %s", got, want)
			}
		})
	}
	if hostDevs[1].Path != "/dev/fuse" || hostDevs[1].Major != 10 {
		t.Errorf("HostDevices changed to %+v", hostDevs)
	}
}

// kubeletLimits are resources as kubelet fills them in: every controller's.
func kubeletLimits() *runtimeapi.LinuxContainerResources {
	return &runtimeapi.LinuxContainerResources{CpuShares: 102, CpuQuota: 50000, CpuPeriod: 100000, CpusetCpus: "0",
		MemoryLimitInBytes: 64 << 20, OomScoreAdj: 1000,
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}, {PageSize: "1GB", Limit: 0}},
		Unified:        map[string]string{"memory.high": "max", "cpu.weight": "4"}}
}

// Kubelet sends limits of every controller (a hugepage limit for every
// page size the node has); a host without a controller must still run the
// container, without that controller's limits, and keep the others.
func TestLimitsOfMissingControllers(t *testing.T) {
	tests := []struct {
		missing MissingControllers
		dropped []string
		check   func(r *specs.LinuxResources) bool
	}{
		{nil, nil, func(r *specs.LinuxResources) bool {
			return len(r.HugepageLimits) == 2 && r.Memory != nil && r.CPU.Shares != nil && r.CPU.Cpus == "0" && len(r.Unified) == 2
		}},
		{MissingControllers{"hugetlb"}, []string{"hugepage_limits"}, func(r *specs.LinuxResources) bool {
			return len(r.HugepageLimits) == 0 && r.Memory != nil && r.CPU.Shares != nil
		}},
		{MissingControllers{"cpu", "cpuset"}, []string{"cpu_shares/cpu_quota/cpu_period", "cpuset_cpus/cpuset_mems", "unified[cpu.weight]"},
			func(r *specs.LinuxResources) bool {
				return r.CPU == nil && r.Memory != nil && len(r.HugepageLimits) == 2 && r.Unified["memory.high"] == "max"
			}},
		{MissingControllers{"memory"}, []string{"memory_limit_in_bytes/memory_swap_limit_in_bytes", "unified[memory.high]"},
			func(r *specs.LinuxResources) bool {
				return r.Memory == nil && r.CPU.Shares != nil && len(r.Unified) == 1
			}},
	}
	for _, tt := range tests {
		s, err := buildSpec(t, func(in *ContainerInput) {
			in.Missing = tt.missing
			in.Config.Linux = &runtimeapi.LinuxContainerConfig{Resources: kubeletLimits()}
		})
		if err != nil {
			t.Fatal(err)
		}
		if !tt.check(s.Linux.Resources) {
			t.Errorf("missing %v: spec resources %+v", tt.missing, s.Linux.Resources)
		}
		res, err := Resources(kubeletLimits(), false, tt.missing)
		if err != nil || !tt.check(res) {
			t.Errorf("Resources(missing %v) = %+v, %v", tt.missing, res, err)
		}
		if got := DroppedResources(kubeletLimits(), tt.missing); !slices.Equal(got, tt.dropped) {
			t.Errorf("DroppedResources(missing %v) = %v, want %v", tt.missing, got, tt.dropped)
		}
	}
	// Dropping is no licence for a malformed size.
	if _, err := Resources(&runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2XB"}}}, false, MissingControllers{"hugetlb"}); err == nil {
		t.Error("Resources(page size 2XB, no hugetlb) = nil error")
	}
}

func TestAppliedResources(t *testing.T) {
	in := kubeletLimits()
	in.OomScoreAdj = -997
	got := AppliedResources(in, true, MissingControllers{"hugetlb", "memory"})
	if got.OomScoreAdj != 0 || len(got.HugepageLimits) != 0 || got.MemoryLimitInBytes != 0 || got.Unified["memory.high"] != "" ||
		got.CpuShares != 102 || got.Unified["cpu.weight"] != "4" {
		t.Errorf("AppliedResources(clamp, no hugetlb nor memory) = %v", got)
	}
	if in.OomScoreAdj != -997 || len(in.HugepageLimits) != 2 || len(in.Unified) != 2 {
		t.Errorf("AppliedResources changed its input: %v", in)
	}
	if got := AppliedResources(in, false, nil); !proto.Equal(got, in) {
		t.Errorf("AppliedResources() = %v, want it unchanged", got)
	}
	if got := AppliedResources(nil, true, MissingControllers{"cpu"}); got == nil {
		t.Error("AppliedResources(nil) = nil")
	}
}

func TestUpdatedResources(t *testing.T) {
	cur := &runtimeapi.LinuxContainerResources{CpuShares: 2, CpuQuota: 5000, MemoryLimitInBytes: 1 << 20,
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}, {PageSize: "1GB", Limit: 0}},
		Unified:        map[string]string{"memory.high": "max", "pids.max": "10"}}
	got := UpdatedResources(cur, &runtimeapi.LinuxContainerResources{CpuShares: 512,
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}},
		Unified:        map[string]string{"pids.max": "20"}})
	want := &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 5000, MemoryLimitInBytes: 1 << 20,
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}, {PageSize: "1GB", Limit: 0}},
		Unified:        map[string]string{"memory.high": "max", "pids.max": "20"}}
	if !proto.Equal(got, want) {
		t.Errorf("UpdatedResources() = %v, want %v", got, want)
	}
	if cur.CpuShares != 2 || cur.HugepageLimits[0].Limit != 0 || cur.Unified["pids.max"] != "10" {
		t.Errorf("UpdatedResources changed its input: %v", cur)
	}
}
