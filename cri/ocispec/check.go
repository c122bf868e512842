package ocispec

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The checks here run every rule of ForContainer and ForSandboxInfra that
// depends on the CRI config alone, with no I/O and nothing created, so that
// a request is refused before crisp records anything. The builders run
// the same rules again; each rule is written once, in the file of the spec
// part it shapes.

// CheckSandbox checks the parts of a pod config that become spec fields:
// namespace options, sysctls, run-as ids, the cgroup parent, the pod's
// seccomp profile and its resources. Errors wrap ErrInvalid and name the
// field.
func CheckSandbox(cfg *runtimeapi.PodSandboxConfig) error {
	linux := cfg.GetLinux()
	sc := linux.GetSecurityContext()
	ns := sc.GetNamespaceOptions()
	if err := checkNamespaceModes("linux.security_context.namespace_options", ns, false); err != nil {
		return err
	}
	if err := checkUserns("linux.security_context.namespace_options", ns); err != nil {
		return err
	}
	if _, err := podSysctls(linux.GetSysctls(), ns.GetNetwork() == runtimeapi.NamespaceMode_NODE,
		ns.GetIpc() == runtimeapi.NamespaceMode_NODE); err != nil {
		return err
	}
	if _, err := infraUser(sc); err != nil {
		return err
	}
	for i, g := range sc.GetSupplementalGroups() {
		if _, err := checkID64(fmt.Sprintf("linux.security_context.supplemental_groups[%d]", i), g); err != nil {
			return err
		}
	}
	if err := checkGroupsPolicy("linux.security_context", sc.GetSupplementalGroupsPolicy()); err != nil {
		return err
	}
	if _, err := cgroupsPath(linux.GetCgroupParent(), "check"); err != nil {
		return err
	}
	if _, _, err := profileOf("linux.security_context.seccomp", sc.GetSeccomp(), "linux.security_context.seccomp_profile_path", sc.GetSeccompProfilePath()); err != nil {
		return err
	}
	for _, r := range []struct {
		field string
		res   *runtimeapi.LinuxContainerResources
	}{{"linux.resources", linux.GetResources()}, {"linux.overhead", linux.GetOverhead()}} {
		if _, _, err := resources(r.res, false); err != nil {
			return fmt.Errorf("%s: %w", r.field, err)
		}
	}
	return nil
}

// Node is what CheckContainer may ask of the node.
type Node struct {
	// AppArmor tells whether Localhost AppArmor profiles can be used.
	AppArmor bool
	// SeccompProfileRoot is where relative Localhost seccomp profiles live.
	SeccompProfileRoot string
	// Stat looks at host paths (os.Stat); nil skips the checks that need
	// it.
	Stat func(path string) (fs.FileInfo, error)
}

// CheckContainer checks the parts of a container config that become spec
// fields: process (working dir, env, stop signal), capabilities, mounts,
// resources, devices, masked paths, seccomp and AppArmor profiles, run-as
// ids and namespace options; with node.Stat, also that mount sources,
// device nodes and Localhost seccomp profiles exist on the host. Rules that
// need the pod (privileged pods, PID sharing) or the image (its users) run
// at create. Errors wrap ErrInvalid and name the field.
func CheckContainer(cfg *runtimeapi.ContainerConfig, node Node) error {
	if len(cfg.GetCDIDevices()) > 0 {
		return fmt.Errorf("CDI_devices are not supported: %w", ErrInvalid)
	}
	if _, err := workingDir(cfg.GetWorkingDir(), ""); err != nil {
		return err
	}
	if _, err := processEnv(nil, cfg.GetEnvs(), "", ""); err != nil {
		return err
	}
	if _, err := ContainerStopSignal(cfg, nil); err != nil {
		return err
	}
	sc := cfg.GetLinux().GetSecurityContext()
	privileged := sc.GetPrivileged()
	if _, err := capabilities(sc.GetCapabilities(), privileged, nil); err != nil {
		return err
	}
	if _, _, err := criMounts(cfg, privileged, nil); err != nil {
		return err
	}
	if _, _, err := resources(cfg.GetLinux().GetResources(), false); err != nil {
		return err
	}
	if err := checkDeviceFormats(cfg.GetDevices()); err != nil {
		return err
	}
	if _, _, err := maskedPaths(sc); err != nil {
		return err
	}
	kind, ref, err := profileOf("security_context.seccomp", sc.GetSeccomp(), "security_context.seccomp_profile_path", sc.GetSeccompProfilePath())
	if err != nil {
		return err
	}
	seccompFile := ""
	if kind == profileLocalhost && !privileged {
		if seccompFile, err = localhostProfileFile(ref, node.SeccompProfileRoot); err != nil {
			return err
		}
	}
	if _, err := apparmorFor(sc, node.AppArmor); err != nil {
		return err
	}
	if err := checkRunAs(sc); err != nil {
		return err
	}
	ns := sc.GetNamespaceOptions()
	if err := checkNamespaceModes("security_context.namespace_options", ns, true); err != nil {
		return err
	}
	if err := checkUserns("security_context.namespace_options", ns); err != nil {
		return err
	}
	if node.Stat == nil {
		return nil
	}
	return checkHostPaths(cfg, seccompFile, node.Stat)
}

// checkHostPaths checks that what a container takes from the host exists:
// mount sources, device nodes (which must be devices) and its Localhost
// seccomp profile.
func checkHostPaths(cfg *runtimeapi.ContainerConfig, seccompFile string, stat func(string) (fs.FileInfo, error)) error {
	missing := func(field, p string, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s %q does not exist on the host: %w", field, p, ErrInvalid)
		}
		return fmt.Errorf("%s %q cannot be used: %v: %w", field, p, err, ErrInvalid)
	}
	for i, m := range cfg.GetMounts() {
		if m.GetImage() != nil {
			continue // an image volume: CreateContainer mounts the image
		}
		if _, err := stat(m.HostPath); err != nil {
			return missing(fmt.Sprintf("mounts[%d].host_path", i), m.HostPath, err)
		}
	}
	for i, d := range cfg.GetDevices() {
		fi, err := stat(d.HostPath)
		if err != nil {
			return missing(fmt.Sprintf("devices[%d].host_path", i), d.HostPath, err)
		}
		if fi.Mode()&fs.ModeDevice == 0 {
			return fmt.Errorf("devices[%d].host_path %q is not a device node: %w", i, d.HostPath, ErrInvalid)
		}
	}
	if seccompFile != "" {
		if _, err := stat(seccompFile); err != nil {
			return missing("security_context.seccomp localhost profile", seccompFile, err)
		}
	}
	return nil
}

// CheckContainerInPod checks what a container asks of its pod: privileged
// needs a privileged pod, and the host's PID namespace a pod that uses it
// (the pod's trust decision looked at the pod's, not the container's).
// Errors wrap ErrInvalid.
func CheckContainerInPod(cfg *runtimeapi.ContainerConfig, sb Sandbox) error {
	sc := cfg.GetLinux().GetSecurityContext()
	if sc.GetPrivileged() && !sb.privileged() {
		return fmt.Errorf("security_context.privileged is set but the pod is not privileged: %w", ErrInvalid)
	}
	if sc.GetNamespaceOptions().GetPid() == runtimeapi.NamespaceMode_NODE && podNamespaces(&sb).GetPid() != runtimeapi.NamespaceMode_NODE {
		return fmt.Errorf("security_context.namespace_options.pid is NODE but the pod does not use the host's PID namespace: %w", ErrInvalid)
	}
	return nil
}

// checkNamespaceModes refuses unknown namespace modes, and TARGET where
// only a container's PID namespace may use it.
func checkNamespaceModes(field string, ns *runtimeapi.NamespaceOption, container bool) error {
	for _, m := range []struct {
		name string
		mode runtimeapi.NamespaceMode
	}{{"network", ns.GetNetwork()}, {"pid", ns.GetPid()}, {"ipc", ns.GetIpc()}} {
		if _, known := runtimeapi.NamespaceMode_name[int32(m.mode)]; !known {
			return fmt.Errorf("%s.%s: unknown mode %d: %w", field, m.name, m.mode, ErrInvalid)
		}
		if m.mode == runtimeapi.NamespaceMode_TARGET && (m.name != "pid" || !container) {
			return fmt.Errorf("%s.%s: TARGET is only for a container's pid namespace: %w", field, m.name, ErrInvalid)
		}
	}
	if ns.GetPid() == runtimeapi.NamespaceMode_TARGET && ns.GetTargetId() == "" {
		return fmt.Errorf("%s.pid is TARGET without target_id: %w", field, ErrInvalid)
	}
	return nil
}

// checkRunAs checks a container's run-as fields without the image.
func checkRunAs(sc *runtimeapi.LinuxContainerSecurityContext) error {
	if v := sc.GetRunAsUser(); v != nil {
		if _, err := checkID64("security_context.run_as_user", v.Value); err != nil {
			return err
		}
	}
	if n := sc.GetRunAsUsername(); n != "" && (len(n) > 256 || strings.ContainsAny(n, ":\x00\n")) {
		return fmt.Errorf("security_context.run_as_username %q is not a user name: %w", n, ErrInvalid)
	}
	if v := sc.GetRunAsGroup(); v != nil {
		if sc.GetRunAsUser() == nil && sc.GetRunAsUsername() == "" {
			return fmt.Errorf("security_context.run_as_group needs run_as_user or run_as_username: %w", ErrInvalid)
		}
		if _, err := checkID64("security_context.run_as_group", v.Value); err != nil {
			return err
		}
	}
	for i, g := range sc.GetSupplementalGroups() {
		if _, err := checkID64(fmt.Sprintf("security_context.supplemental_groups[%d]", i), g); err != nil {
			return err
		}
	}
	return checkGroupsPolicy("security_context", sc.GetSupplementalGroupsPolicy())
}

func checkGroupsPolicy(field string, p runtimeapi.SupplementalGroupsPolicy) error {
	if _, known := runtimeapi.SupplementalGroupsPolicy_name[int32(p)]; !known {
		return fmt.Errorf("%s.supplemental_groups_policy: unknown policy %d: %w", field, p, ErrInvalid)
	}
	return nil
}
