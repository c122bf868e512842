package ocispec

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var (
	hugepageSize = regexp.MustCompile(`^[1-9][0-9]*[KMGTP]B$`)
	unifiedKey   = regexp.MustCompile(`^[a-z][a-z0-9_]*\.[A-Za-z0-9_.]+$`)
)

// resources converts LinuxContainerResources; zero means unset, as in
// CRI. It refuses values the kernel would reject or that make no sense
// (a quota under 1ms, a period outside 1ms..1s). A negative oom_score_adj
// becomes 0 when clamp is set. The result always has room for the device
// rules, which devices fills in.
func resources(r *runtimeapi.LinuxContainerResources, clamp bool) (*specs.LinuxResources, *int, error) {
	out := &specs.LinuxResources{}
	oom := 0
	if r == nil {
		return out, &oom, nil
	}
	bad := func(field string, v any, why string) error {
		return fmt.Errorf("resources.%s %v %s: %w", field, v, why, ErrInvalid)
	}
	cpu := &specs.LinuxCPU{}
	switch p := r.CpuPeriod; {
	case p == 0:
	case p < 1000 || p > 1000000:
		return nil, nil, bad("cpu_period", p, "is outside 1000..1000000 µs")
	default:
		v := uint64(p)
		cpu.Period = &v
	}
	switch q := r.CpuQuota; {
	case q == 0:
	case q == -1:
		cpu.Quota = &q // unlimited
	case q < 1000:
		return nil, nil, bad("cpu_quota", q, "is neither -1 (unlimited) nor at least 1000 µs")
	default:
		cpu.Quota = &q
	}
	switch s := r.CpuShares; {
	case s == 0:
	case s < 0 || s > 262144:
		return nil, nil, bad("cpu_shares", s, "is outside 1..262144")
	default:
		v := uint64(s)
		cpu.Shares = &v
	}
	for _, c := range []struct{ field, v string }{{"cpuset_cpus", r.CpusetCpus}, {"cpuset_mems", r.CpusetMems}} {
		if c.v != "" && !validCPUList(c.v) {
			return nil, nil, bad(c.field, strconv.Quote(c.v), "is not a list like 0-3,5")
		}
	}
	cpu.Cpus, cpu.Mems = r.CpusetCpus, r.CpusetMems
	if *cpu != (specs.LinuxCPU{}) {
		out.CPU = cpu
	}

	mem := r.MemoryLimitInBytes
	switch {
	case mem < 0:
		return nil, nil, bad("memory_limit_in_bytes", mem, "is negative")
	case mem > 0:
		out.Memory = &specs.LinuxMemory{Limit: &mem}
	}
	switch swap := r.MemorySwapLimitInBytes; {
	case swap == 0:
	case swap < -1:
		return nil, nil, bad("memory_swap_limit_in_bytes", swap, "is neither -1 (unlimited) nor positive")
	case swap == -1:
		if mem > 0 {
			out.Memory.Swap = &swap
		}
	case mem == 0:
		return nil, nil, bad("memory_swap_limit_in_bytes", swap, "is set without memory_limit_in_bytes")
	case swap < mem:
		return nil, nil, bad("memory_swap_limit_in_bytes", swap, "is below memory_limit_in_bytes (it counts memory plus swap)")
	default:
		out.Memory.Swap = &swap
	}

	for i, h := range r.HugepageLimits {
		if !hugepageSize.MatchString(h.GetPageSize()) {
			return nil, nil, bad(fmt.Sprintf("hugepage_limits[%d].page_size", i), strconv.Quote(h.GetPageSize()), "is not like 2MB or 1GB")
		}
		out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.PageSize, Limit: h.Limit})
	}
	for k, v := range r.Unified {
		if !unifiedKey.MatchString(k) || strings.ContainsAny(v, "\n\x00") {
			return nil, nil, bad("unified", strconv.Quote(k), "is not a cgroup v2 file name with a one-line value")
		}
	}
	if len(r.Unified) > 0 {
		out.Unified = maps.Clone(r.Unified)
	}

	if r.OomScoreAdj < -1000 || r.OomScoreAdj > 1000 {
		return nil, nil, bad("oom_score_adj", r.OomScoreAdj, "is outside -1000..1000")
	}
	oom = int(r.OomScoreAdj)
	if clamp && oom < 0 {
		oom = 0
	}
	return out, &oom, nil
}

// validCPUList checks the kernel's list format: "0-3,5,7-8".
func validCPUList(s string) bool {
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b, err2 := a, error(nil)
		if isRange {
			b, err2 = strconv.ParseUint(hi, 10, 16)
		}
		if err1 != nil || err2 != nil || a > b {
			return false
		}
	}
	return true
}

func ptr[T any](v T) *T { return &v }

// defaultDeviceRules allow what every container needs: mknod of any node
// (using one still needs a rule), and the standard nodes runc creates:
// null, zero, full, tty, random, urandom, ptmx and the ptys. runc appends
// the same list itself; spelling it out keeps the spec self-contained.
func defaultDeviceRules() []specs.LinuxDeviceCgroup {
	rule := func(typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
		r := specs.LinuxDeviceCgroup{Allow: true, Type: typ, Access: access}
		if major >= 0 {
			r.Major = ptr(major)
		}
		if minor >= 0 {
			r.Minor = ptr(minor)
		}
		return r
	}
	return []specs.LinuxDeviceCgroup{
		rule("c", -1, -1, "m"), rule("b", -1, -1, "m"),
		rule("c", 1, 3, "rwm"), rule("c", 1, 5, "rwm"), rule("c", 1, 7, "rwm"), rule("c", 5, 0, "rwm"),
		rule("c", 1, 8, "rwm"), rule("c", 1, 9, "rwm"), rule("c", 5, 2, "rwm"), rule("c", 136, -1, "rwm"),
	}
}

// denyAll comes first in every device cgroup: the allowlist follows.
var denyAll = specs.LinuxDeviceCgroup{Allow: false, Access: "rwm"}

// devices returns the device nodes to create and the device cgroup rules:
// deny everything, then allow the defaults and each CRI device with its
// permissions (default "rwm"). A privileged container gets every host
// device and a rule allowing all, unless PrivilegedWithoutHostDevices
// (containerd's option of that name: then it has the defaults, as an
// unprivileged one).
func devices(in *ContainerInput, privileged bool) ([]specs.LinuxDevice, []specs.LinuxDeviceCgroup, error) {
	rules := []specs.LinuxDeviceCgroup{denyAll}
	var devs []specs.LinuxDevice
	if privileged && !in.PrivilegedWithoutHostDevices {
		devs = append(devs, in.HostDevices...)
		rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Access: "rwm"})
	} else {
		rules = append(rules, defaultDeviceRules()...)
	}
	stat := in.StatDevice
	if stat == nil {
		stat = DeviceFromPath
	}
	if err := checkDeviceFormats(in.Config.GetDevices()); err != nil {
		return nil, nil, err
	}
	for i, d := range in.Config.GetDevices() {
		field := fmt.Sprintf("devices[%d]", i)
		dst := d.ContainerPath
		if dst == "" {
			dst = d.HostPath
		}
		perms := d.Permissions
		if perms == "" {
			perms = "rwm"
		}
		dev, err := stat(d.HostPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, nil, fmt.Errorf("%s.host_path %q does not exist: %w", field, d.HostPath, ErrInvalid)
		case err != nil:
			return nil, nil, fmt.Errorf("%s.host_path: %w", field, err)
		}
		dev.Path = path.Clean(dst)
		devs = slices.DeleteFunc(devs, func(o specs.LinuxDevice) bool { return o.Path == dev.Path })
		devs = append(devs, dev)
		typ := dev.Type
		if typ == "u" {
			typ = "c"
		}
		rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: ptr(dev.Major), Minor: ptr(dev.Minor), Access: perms})
	}
	return devs, rules, nil
}

// checkDeviceFormats checks the CRI devices' paths and permissions; that
// the host node exists is checked where it is read.
func checkDeviceFormats(devs []*runtimeapi.Device) error {
	for i, d := range devs {
		field := fmt.Sprintf("devices[%d]", i)
		if !filepath.IsAbs(d.HostPath) || strings.ContainsRune(d.HostPath, 0) {
			return fmt.Errorf("%s.host_path %q is not absolute: %w", field, d.HostPath, ErrInvalid)
		}
		if d.ContainerPath != "" && (!path.IsAbs(d.ContainerPath) || strings.ContainsRune(d.ContainerPath, 0)) {
			return fmt.Errorf("%s.container_path %q is not absolute: %w", field, d.ContainerPath, ErrInvalid)
		}
		if strings.Trim(d.Permissions, "rwm") != "" {
			return fmt.Errorf("%s.permissions %q is not made of r, w and m: %w", field, d.Permissions, ErrInvalid)
		}
	}
	return nil
}

// Resources converts CRI container resources for an update of a running
// container (UpdateContainerResources), validated as at create. A negative
// oom_score_adj is dropped when clamp is set, since it cannot be applied;
// limits of missing controllers are dropped (see MissingControllers).
func Resources(r *runtimeapi.LinuxContainerResources, clamp bool, missing MissingControllers) (*specs.LinuxResources, error) {
	res, _, err := resources(r, clamp)
	if err != nil {
		return nil, fmt.Errorf("container resources: %w", err)
	}
	missing.drop(res)
	return res, nil
}

// AppliedResources is r as crisp applies it, for ContainerStatus: without
// the limits of missing controllers, with oom_score_adj clamped under
// clamp. It never returns nil.
func AppliedResources(r *runtimeapi.LinuxContainerResources, clamp bool, missing MissingControllers) *runtimeapi.LinuxContainerResources {
	out := &runtimeapi.LinuxContainerResources{}
	if r != nil {
		out = proto.Clone(r).(*runtimeapi.LinuxContainerResources)
	}
	missing.dropCRI(out)
	if clamp && out.OomScoreAdj < 0 {
		out.OomScoreAdj = 0
	}
	return out
}

// UpdatedResources is cur after an UpdateContainerResources with update:
// its set (non-zero) fields replace cur's, as runc update applies only
// what it is given; hugepage limits and unified entries given replace
// those of the same page size or key.
func UpdatedResources(cur, update *runtimeapi.LinuxContainerResources) *runtimeapi.LinuxContainerResources {
	out := &runtimeapi.LinuxContainerResources{}
	if cur != nil {
		out = proto.Clone(cur).(*runtimeapi.LinuxContainerResources)
	}
	if update == nil {
		return out
	}
	limits := update.HugepageLimits
	u := proto.Clone(update).(*runtimeapi.LinuxContainerResources)
	u.HugepageLimits = nil
	proto.Merge(out, u) // scalars set in u win; maps merge by key
	for _, l := range limits {
		i := slices.IndexFunc(out.HugepageLimits, func(h *runtimeapi.HugepageLimit) bool { return h.PageSize == l.PageSize })
		if i < 0 {
			out.HugepageLimits = append(out.HugepageLimits, proto.Clone(l).(*runtimeapi.HugepageLimit))
		} else {
			out.HugepageLimits[i] = proto.Clone(l).(*runtimeapi.HugepageLimit)
		}
	}
	return out
}
