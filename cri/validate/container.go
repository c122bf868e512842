package validate

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"unicode"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/ocispec"
)

// maxPathList bounds masked and read-only path lists, and capability lists.
const maxPathList = 256

// CreateContainer checks a container before it is recorded: its pod id,
// metadata, image, process, mounts, devices, log path, labels and
// annotations, and through ocispec.CheckContainer everything that becomes
// its spec, including that mount sources and devices exist on the host.
// What depends on the pod (is it ready, privileged, does it share PIDs)
// is checked by the handler once it has the pod.
func (v *Validator) CreateContainer(r *runtimeapi.CreateContainerRequest) error {
	call := "create container"
	if err := podID(call, r.PodSandboxId); err != nil {
		return err
	}
	cfg := r.GetConfig()
	if cfg == nil {
		return invalid(call, "config", "is missing")
	}
	if cfg.GetMetadata() == nil {
		return invalid(call, "config.metadata", "is missing")
	}
	if err := checkName(call, "metadata.name", cfg.Metadata.Name); err != nil {
		return err
	}
	call = fmt.Sprintf("create container %s in pod %s", cfg.Metadata.Name, r.PodSandboxId)
	if err := v.imageSpec(call, "image", cfg.GetImage(), true); err != nil {
		return err
	}
	if len(cfg.Command) > 0 && cfg.Command[0] == "" {
		return invalid(call, "command[0]", "is empty")
	}
	if err := v.checkProcess(call, "command", cfg.Command, cfg.Args, cfg.Envs); err != nil {
		return err
	}
	if cfg.WorkingDir != "" {
		if err := checkString(call, "working_dir", cfg.WorkingDir, maxPath); err != nil {
			return err
		}
	}
	if err := v.checkMountList(call, cfg.Mounts, cfg.Devices); err != nil {
		return err
	}
	if err := checkLogPath(call, cfg.LogPath); err != nil {
		return err
	}
	if err := v.checkMap(call, "labels", cfg.Labels); err != nil {
		return err
	}
	if err := v.checkMap(call, "annotations", cfg.Annotations); err != nil {
		return err
	}
	if err := checkContainerSecurity(call, cfg.GetLinux().GetSecurityContext()); err != nil {
		return err
	}
	if err := ocispec.CheckContainer(cfg, v.node); err != nil {
		return fmt.Errorf("%s: %w", call, err)
	}
	return nil
}

// imageSpec checks an image reference (required or not, one word of
// printable characters) and its annotations.
func (v *Validator) imageSpec(call, field string, spec *runtimeapi.ImageSpec, required bool) error {
	ref := spec.GetImage()
	if ref == "" {
		if required {
			return invalid(call, field+".image", "is empty")
		}
		return nil
	}
	for _, f := range []struct{ name, v string }{{".image", ref}, {".user_specified_image", spec.GetUserSpecifiedImage()}, {".image_ref", spec.GetImageRef()}} {
		if err := checkString(call, field+f.name, f.v, maxImage); err != nil {
			return err
		}
		if strings.IndexFunc(f.v, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
			return invalid(call, field+f.name, fmt.Sprintf("%q has white space or a control character", f.v))
		}
	}
	if err := checkString(call, field+".runtime_handler", spec.GetRuntimeHandler(), maxName); err != nil {
		return err
	}
	return v.checkMap(call, field+".annotations", spec.GetAnnotations())
}

// checkProcess bounds a process's command, args and environment: counts,
// the length of each string and the whole, and no NUL bytes (execve ends
// a string there). Environment keys are checked by ocispec.
func (v *Validator) checkProcess(call, commandField string, command, args []string, env []*runtimeapi.KeyValue) error {
	l := v.limits
	if n := len(command) + len(args); n > l.Args {
		return invalid(call, commandField+" and args", fmt.Sprintf("have %d words, more than %d", n, l.Args))
	}
	if len(env) > l.Env {
		return invalid(call, "envs", fmt.Sprintf("has %d entries, more than %d", len(env), l.Env))
	}
	total := 0
	for _, list := range []struct {
		field string
		words []string
	}{{commandField, command}, {"args", args}} {
		for i, w := range list.words {
			if err := checkString(call, fmt.Sprintf("%s[%d]", list.field, i), w, l.ArgBytes); err != nil {
				return err
			}
			total += len(w) + 1
		}
	}
	for i, kv := range env {
		if kv == nil {
			return invalid(call, fmt.Sprintf("envs[%d]", i), "is empty")
		}
		n := len(kv.Key) + 1 + len(kv.Value)
		if n > l.ArgBytes {
			return invalid(call, fmt.Sprintf("envs[%d] (%.64s)", i, kv.Key), fmt.Sprintf("is %d bytes long, more than %d", n, l.ArgBytes))
		}
		total += n + 1
	}
	if total > l.ProcessBytes {
		return invalid(call, "command, args and envs", fmt.Sprintf("hold %d bytes, more than %d", total, l.ProcessBytes))
	}
	return nil
}

// checkMountList bounds mounts and devices and checks their paths' form;
// ocispec checks their meaning and that sources exist.
func (v *Validator) checkMountList(call string, mounts []*runtimeapi.Mount, devices []*runtimeapi.Device) error {
	if len(mounts) > v.limits.Mounts {
		return invalid(call, "mounts", fmt.Sprintf("has %d entries, more than %d", len(mounts), v.limits.Mounts))
	}
	for i, m := range mounts {
		field := fmt.Sprintf("mounts[%d]", i)
		if m == nil {
			return invalid(call, field, "is empty")
		}
		if err := checkAbsPath(call, field+".container_path", m.ContainerPath); err != nil {
			return err
		}
		if err := checkString(call, field+".image_sub_path", m.ImageSubPath, maxPath); err != nil {
			return err
		}
		if m.Image != nil { // an image volume: no host path, a sub path inside the image
			if err := v.imageSpec(call, field+".image", m.Image, true); err != nil {
				return err
			}
			if m.HostPath != "" {
				return invalid(call, field+".host_path", "is set with an image (an image volume has no host path)")
			}
			if sub := m.ImageSubPath; path.IsAbs(sub) || slices.Contains(strings.Split(sub, "/"), "..") {
				return invalid(call, field+".image_sub_path", "must be relative, without '..'")
			}
			continue
		}
		if err := checkAbsPath(call, field+".host_path", m.HostPath); err != nil {
			return err
		}
	}
	if len(devices) > v.limits.Devices {
		return invalid(call, "devices", fmt.Sprintf("has %d entries, more than %d", len(devices), v.limits.Devices))
	}
	for i, d := range devices {
		field := fmt.Sprintf("devices[%d]", i)
		if d == nil {
			return invalid(call, field, "is empty")
		}
		if err := checkAbsPath(call, field+".host_path", d.HostPath); err != nil {
			return err
		}
		if d.ContainerPath != "" {
			if err := checkAbsPath(call, field+".container_path", d.ContainerPath); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkLogPath requires log_path to stay beneath the pod's log directory:
// relative, no '..'.
func checkLogPath(call, p string) error {
	if p == "" {
		return nil
	}
	if err := checkString(call, "log_path", p, maxPath); err != nil {
		return err
	}
	if path.IsAbs(p) {
		return invalid(call, "log_path", fmt.Sprintf("%q is absolute; it is relative to the pod's log_directory", p))
	}
	if hasDotDot(p) || path.Clean(p) == "." {
		return invalid(call, "log_path", fmt.Sprintf("%q does not name a file beneath the pod's log_directory", p))
	}
	return nil
}

// checkContainerSecurity bounds the security context's lists and checks
// its free-form strings; ocispec checks their meaning.
func checkContainerSecurity(call string, sc *runtimeapi.LinuxContainerSecurityContext) error {
	caps := sc.GetCapabilities()
	for _, l := range []struct {
		field string
		list  []string
	}{
		{"security_context.capabilities.add_capabilities", caps.GetAddCapabilities()},
		{"security_context.capabilities.drop_capabilities", caps.GetDropCapabilities()},
		{"security_context.capabilities.add_ambient_capabilities", caps.GetAddAmbientCapabilities()},
		{"security_context.masked_paths", sc.GetMaskedPaths()},
		{"security_context.readonly_paths", sc.GetReadonlyPaths()},
	} {
		if len(l.list) > maxPathList {
			return invalid(call, l.field, fmt.Sprintf("has %d entries, more than %d", len(l.list), maxPathList))
		}
		for i, s := range l.list {
			if err := checkString(call, fmt.Sprintf("%s[%d]", l.field, i), s, maxPath); err != nil {
				return err
			}
		}
	}
	if len(sc.GetSupplementalGroups()) > maxPathList {
		return invalid(call, "security_context.supplemental_groups", fmt.Sprintf("has %d entries, more than %d", len(sc.GetSupplementalGroups()), maxPathList))
	}
	for _, f := range []struct{ field, v string }{
		{"security_context.apparmor_profile", sc.GetApparmorProfile()},
		{"security_context.seccomp_profile_path", sc.GetSeccompProfilePath()},
		{"security_context.apparmor.localhost_ref", sc.GetApparmor().GetLocalhostRef()},
		{"security_context.seccomp.localhost_ref", sc.GetSeccomp().GetLocalhostRef()},
		{"security_context.namespace_options.target_id", sc.GetNamespaceOptions().GetTargetId()},
	} {
		if err := checkString(call, f.field, f.v, maxPath); err != nil {
			return err
		}
	}
	return checkSELinux(call, "security_context.selinux_options", sc.GetSelinuxOptions())
}
