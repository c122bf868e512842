package ocispec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// allCaps lists the Linux capabilities by number (0 to 40).
var allCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// defaultCaps is what an unprivileged container starts with, as in
// containerd and CRI-O.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// normalizeCap turns "net_admin" or "CAP_NET_ADMIN" into "CAP_NET_ADMIN".
func normalizeCap(field, c string) (string, error) {
	u := strings.ToUpper(strings.TrimSpace(c))
	if !strings.HasPrefix(u, "CAP_") {
		u = "CAP_" + u
	}
	if !slices.Contains(allCaps, u) {
		return "", fmt.Errorf("%s: unknown capability %q: %w", field, c, ErrInvalid)
	}
	return u, nil
}

// capabilities computes the capability sets: the defaults, or every
// capability with "ALL" in add; "ALL" in drop empties the set; then the
// named adds, then the named drops. Ambient capabilities also join every
// other set (the kernel needs them permitted and inheritable); dropping one
// explicitly is a conflict. A privileged container gets everything. The
// inheritable set is otherwise empty (CVE-2022-24769). Sets come out in
// capability-number order.
func capabilities(c *runtimeapi.Capability, privileged bool, host []string) (*specs.LinuxCapabilities, error) {
	all := allCaps
	if host != nil {
		all = nil
		for _, h := range allCaps {
			if slices.Contains(host, h) {
				all = append(all, h)
			}
		}
	}
	set := map[string]bool{}
	if privileged {
		for _, n := range all {
			set[n] = true
		}
	} else {
		for _, n := range defaultCaps {
			set[n] = true
		}
	}
	add, drop := c.GetAddCapabilities(), c.GetDropCapabilities()
	isAll := func(s string) bool { return strings.EqualFold(strings.TrimSpace(s), "ALL") }
	if !privileged && slices.ContainsFunc(add, isAll) {
		clear(set)
		for _, n := range all {
			set[n] = true
		}
	}
	if !privileged && slices.ContainsFunc(drop, isAll) {
		clear(set)
	}
	var adds []string
	dropped := map[string]bool{}
	for _, l := range []struct {
		field string
		names []string
	}{{"add_capabilities", add}, {"drop_capabilities", drop}} {
		for _, name := range l.names {
			if isAll(name) {
				continue
			}
			n, err := normalizeCap("security_context.capabilities."+l.field, name)
			if err != nil {
				return nil, err
			}
			if l.field == "drop_capabilities" {
				dropped[n] = true
			} else {
				adds = append(adds, n)
			}
		}
	}
	for _, n := range adds {
		set[n] = true
	}
	if !privileged {
		for n := range dropped {
			delete(set, n)
		}
	}
	ambient := map[string]bool{}
	for _, name := range c.GetAddAmbientCapabilities() {
		n, err := normalizeCap("security_context.capabilities.add_ambient_capabilities", name)
		if err != nil {
			return nil, err
		}
		if dropped[n] {
			return nil, fmt.Errorf("security_context.capabilities: %s is both dropped and added as ambient: %w", n, ErrInvalid)
		}
		ambient[n], set[n] = true, true
	}
	ordered := func(m map[string]bool) []string {
		var out []string
		for _, n := range allCaps {
			if m[n] {
				out = append(out, n)
			}
		}
		return out
	}
	caps := ordered(set)
	return &specs.LinuxCapabilities{
		Bounding: caps, Effective: slices.Clone(caps), Permitted: slices.Clone(caps),
		Inheritable: ordered(ambient), Ambient: ordered(ambient),
	}, nil
}

// profileKind is what a SecurityProfile or its deprecated string asks for.
type profileKind int

const (
	profileUnconfined profileKind = iota
	profileRuntimeDefault
	profileLocalhost
)

// profileOf reads the SecurityProfile field, or when it is nil the
// deprecated string field ("runtime/default", "docker/default",
// "unconfined", "localhost/<ref>"); both unset mean unconfined.
func profileOf(field string, p *runtimeapi.SecurityProfile, oldField, old string) (profileKind, string, error) {
	if p != nil {
		switch p.ProfileType {
		case runtimeapi.SecurityProfile_RuntimeDefault:
			return profileRuntimeDefault, "", nil
		case runtimeapi.SecurityProfile_Unconfined:
			return profileUnconfined, "", nil
		case runtimeapi.SecurityProfile_Localhost:
			if p.LocalhostRef == "" {
				return 0, "", fmt.Errorf("%s: Localhost profile without localhost_ref: %w", field, ErrInvalid)
			}
			return profileLocalhost, p.LocalhostRef, nil
		}
		return 0, "", fmt.Errorf("%s: unknown profile type %d: %w", field, p.ProfileType, ErrInvalid)
	}
	switch old {
	case "", "unconfined":
		return profileUnconfined, "", nil
	case "runtime/default", "docker/default":
		return profileRuntimeDefault, "", nil
	}
	if ref, ok := strings.CutPrefix(old, "localhost/"); ok && ref != "" {
		return profileLocalhost, ref, nil
	}
	return 0, "", fmt.Errorf("%s %q is not runtime/default, unconfined or localhost/<profile>: %w", oldField, old, ErrInvalid)
}

// seccompFor loads the container's seccomp profile, given the spec with
// its capabilities set. Privileged containers and unset profiles are
// unconfined, as in containerd. Localhost refs are absolute or relative to
// SeccompProfileRoot.
func seccompFor(in *ContainerInput, s *specs.Spec, privileged bool) (*specs.LinuxSeccomp, error) {
	if privileged {
		return nil, nil
	}
	sc := in.Config.GetLinux().GetSecurityContext()
	kind, ref, err := profileOf("security_context.seccomp", sc.GetSeccomp(), "security_context.seccomp_profile_path", sc.GetSeccompProfilePath())
	if err != nil {
		return nil, err
	}
	switch kind {
	case profileUnconfined:
		return nil, nil
	case profileRuntimeDefault:
		p, err := seccomp.GetDefaultProfile(s)
		if err != nil {
			return nil, fmt.Errorf("default seccomp profile: %w", err)
		}
		return p, nil
	}
	file, err := localhostProfileFile(ref, in.SeccompProfileRoot)
	if err != nil {
		return nil, err
	}
	read := in.ReadFile
	if read == nil {
		read = os.ReadFile
	}
	body, err := read(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("security_context.seccomp: localhost profile %q does not exist: %w", file, ErrInvalid)
	}
	if err != nil {
		return nil, fmt.Errorf("security_context.seccomp: read localhost profile: %w", err)
	}
	p, err := seccomp.LoadProfile(string(body), s)
	if err != nil {
		return nil, fmt.Errorf("security_context.seccomp: localhost profile %q: %v: %w", file, err, ErrInvalid)
	}
	return p, nil
}

// localhostProfileFile is the file of a Localhost seccomp profile: ref if
// absolute, else ref beneath root.
func localhostProfileFile(ref, root string) (string, error) {
	if strings.ContainsRune(ref, 0) {
		return "", fmt.Errorf("security_context.seccomp: localhost profile %q has a NUL byte: %w", ref, ErrInvalid)
	}
	if filepath.IsAbs(ref) {
		return ref, nil
	}
	if root == "" || !filepath.IsLocal(ref) {
		return "", fmt.Errorf("security_context.seccomp: localhost profile %q is not an absolute path or a path under the seccomp profile root: %w", ref, ErrInvalid)
	}
	return filepath.Join(root, ref), nil
}

// apparmorFor returns the AppArmor profile name. crisp loads no profile of
// its own yet, so RuntimeDefault and Unconfined both mean none; a
// Localhost profile needs AppArmor on the node and is refused without it
// rather than run unconfined.
func apparmorFor(sc *runtimeapi.LinuxContainerSecurityContext, enabled bool) (string, error) {
	kind, ref, err := profileOf("security_context.apparmor", sc.GetApparmor(), "security_context.apparmor_profile", sc.GetApparmorProfile())
	if err != nil || kind != profileLocalhost {
		return "", err
	}
	if !enabled {
		return "", fmt.Errorf("security_context.apparmor: localhost profile %q requested but AppArmor is not enabled on this node: %w", ref, ErrInvalid)
	}
	return strings.TrimPrefix(ref, "localhost/"), nil
}

// Masked and read-only paths of unprivileged containers, as containerd's
// defaults.
var (
	defaultMaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
		"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	defaultReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// maskedPaths returns the CRI masked_paths and readonly_paths, or the
// defaults for either list left empty (proto3 cannot tell empty from
// unset; kubelet sends the defaults itself).
func maskedPaths(sc *runtimeapi.LinuxContainerSecurityContext) (masked, readonly []string, err error) {
	pick := func(field string, cri, def []string) ([]string, error) {
		if len(cri) == 0 {
			return slices.Clone(def), nil
		}
		for i, p := range cri {
			if !path.IsAbs(p) {
				return nil, fmt.Errorf("security_context.%s[%d] %q is not absolute: %w", field, i, p, ErrInvalid)
			}
		}
		return slices.Clone(cri), nil
	}
	if masked, err = pick("masked_paths", sc.GetMaskedPaths(), defaultMaskedPaths); err != nil {
		return nil, nil, err
	}
	if readonly, err = pick("readonly_paths", sc.GetReadonlyPaths(), defaultReadonlyPaths); err != nil {
		return nil, nil, err
	}
	return masked, readonly, nil
}
