package ocispec

import (
	"maps"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// LimitedControllers are the cgroup controllers whose limits CRI
// resources set: kubelet fills them in whatever the host has (a hugepage
// limit for every page size, CPU shares for every container), and a
// runtime asked for a limit of a controller it cannot use fails the
// container.
var LimitedControllers = []string{"cpu", "cpuset", "memory", "hugetlb", "pids"}

// MissingControllers are the controllers of LimitedControllers the host
// lacks. Their limits are dropped rather than failing every container, as
// containerd's tolerate_missing_hugetlb_controller does for hugetlb.
type MissingControllers []string

func (m MissingControllers) has(c string) bool { return slices.Contains(m, c) }

// drop removes from r the limits of missing controllers; it returns the
// fields it dropped, for a debug log.
func (m MissingControllers) drop(r *specs.LinuxResources) []string {
	var dropped []string
	if r == nil || len(m) == 0 {
		return nil
	}
	if r.CPU != nil {
		if m.has("cpu") && (r.CPU.Shares != nil || r.CPU.Quota != nil || r.CPU.Period != nil) {
			r.CPU.Shares, r.CPU.Quota, r.CPU.Period = nil, nil, nil
			dropped = append(dropped, "cpu_shares/cpu_quota/cpu_period")
		}
		if m.has("cpuset") && (r.CPU.Cpus != "" || r.CPU.Mems != "") {
			r.CPU.Cpus, r.CPU.Mems = "", ""
			dropped = append(dropped, "cpuset_cpus/cpuset_mems")
		}
		if *r.CPU == (specs.LinuxCPU{}) {
			r.CPU = nil
		}
	}
	if m.has("memory") && r.Memory != nil {
		r.Memory = nil
		dropped = append(dropped, "memory_limit_in_bytes/memory_swap_limit_in_bytes")
	}
	if m.has("hugetlb") && len(r.HugepageLimits) > 0 {
		r.HugepageLimits = nil
		dropped = append(dropped, "hugepage_limits")
	}
	if m.has("pids") && r.Pids != nil {
		r.Pids = nil
		dropped = append(dropped, "pids")
	}
	for _, k := range slices.Sorted(maps.Keys(r.Unified)) {
		if c, _, _ := strings.Cut(k, "."); m.has(c) {
			delete(r.Unified, k)
			dropped = append(dropped, "unified["+k+"]")
		}
	}
	return dropped
}

// dropCRI is drop for CRI resources, as ContainerStatus reports them.
func (m MissingControllers) dropCRI(r *runtimeapi.LinuxContainerResources) {
	if m.has("cpu") {
		r.CpuShares, r.CpuQuota, r.CpuPeriod = 0, 0, 0
	}
	if m.has("cpuset") {
		r.CpusetCpus, r.CpusetMems = "", ""
	}
	if m.has("memory") {
		r.MemoryLimitInBytes, r.MemorySwapLimitInBytes = 0, 0
	}
	if m.has("hugetlb") {
		r.HugepageLimits = nil
	}
	for k := range r.Unified {
		if c, _, _ := strings.Cut(k, "."); m.has(c) {
			delete(r.Unified, k)
		}
	}
}

// DroppedResources names what of r the missing controllers drop, for the
// debug log of the container that asked for it.
func DroppedResources(r *runtimeapi.LinuxContainerResources, m MissingControllers) []string {
	res, _, err := resources(r, false)
	if err != nil {
		return nil
	}
	return m.drop(res)
}
