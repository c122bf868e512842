package validate

import (
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// Limits bound what one request may carry. Past a limit the request is
// refused with the limit named, never truncated.
type Limits struct {
	MapEntries   int // entries of one labels, annotations or sysctls map
	MapBytes     int // keys plus values of one such map
	KeyBytes     int // one label or annotation key
	Mounts       int // mounts of a container
	Devices      int // devices of a container
	PortMappings int // port mappings of a pod
	Env          int // environment entries of a container
	Args         int // command plus args of a process
	ArgBytes     int // one argument or environment entry
	ProcessBytes int // command, args and environment of a process together
}

// DefaultLimits are generous for anything kubelet sends and far below what
// would strain crispd:
//   - keys: Kubernetes' longest qualified name (253-byte prefix, '/',
//     63-byte name);
//   - a map's bytes: twice Kubernetes' 256 KiB cap on a pod's annotations;
//   - one argument: the kernel's MAX_ARG_STRLEN (128 KiB), and a process
//     1 MiB in all, half the usual execve limit of 2 MiB.
func DefaultLimits() Limits {
	return Limits{
		MapEntries: 1024, MapBytes: 512 << 10, KeyBytes: 317,
		Mounts: 1024, Devices: 256, PortMappings: 1024,
		Env: 8192, Args: 4096, ArgBytes: 128 << 10, ProcessBytes: 1 << 20,
	}
}

// Lengths of single values.
const (
	maxName  = 253  // names, namespaces, uids, hostnames' FQDN form
	maxID    = 128  // container and pod ids (crisp's are 64 hex digits)
	maxPath  = 4096 // PATH_MAX
	maxImage = 4096 // an image reference
	maxValue = 4096 // a one-line value: a DNS option, an auth field
)

// checkString refuses NUL bytes, invalid UTF-8 and more than max bytes.
func checkString(call, field, v string, max int) error {
	switch {
	case len(v) > max:
		return invalid(call, field, fmt.Sprintf("is %d bytes long, more than %d", len(v), max))
	case strings.ContainsRune(v, 0):
		return invalid(call, field, fmt.Sprintf("%q has a NUL byte", v))
	case !utf8.ValidString(v):
		return invalid(call, field, fmt.Sprintf("%q is not valid UTF-8", v))
	}
	return nil
}

// oneLine is checkString without line breaks either: for values written
// into line-based files (resolv.conf) or logs.
func oneLine(call, field, v string, max int) error {
	if err := checkString(call, field, v, max); err != nil {
		return err
	}
	if strings.ContainsAny(v, "\n\r") {
		return invalid(call, field, fmt.Sprintf("%q has a line break", v))
	}
	return nil
}

// k8sName is what Kubernetes accepts in names that end up in paths and
// hostnames: no slashes, no NUL, no "..".
var k8sName = regexp.MustCompile(`^[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$`)

// checkName requires a non-empty name of letters, digits, '-', '_' and '.'.
func checkName(call, field, v string) error {
	if v == "" {
		return invalid(call, field, "is empty")
	}
	if len(v) > maxName || !k8sName.MatchString(v) {
		return invalid(call, field, fmt.Sprintf("%q is not a valid name (letters, digits, '-', '_', '.'; at most %d)", v, maxName))
	}
	return nil
}

// idFormat is a container or pod id, whole or a prefix as crictl sends.
var idFormat = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

func checkID(call, field, id string) error {
	if id == "" {
		return invalid(call, field, "is empty")
	}
	if len(id) > maxID || !idFormat.MatchString(id) {
		return invalid(call, field, fmt.Sprintf("%q is not an id (letters, digits, '_', '.', '-'; at most %d)", id, maxID))
	}
	return nil
}

func podID(call, id string) error       { return checkID(call, "pod_sandbox_id", id) }
func containerID(call, id string) error { return checkID(call, "container_id", id) }

// checkAbsPath requires an absolute path with no NUL byte and no ".."
// element, at most PATH_MAX long.
func checkAbsPath(call, field, p string) error {
	if err := checkString(call, field, p, maxPath); err != nil {
		return err
	}
	if !path.IsAbs(p) {
		return invalid(call, field, fmt.Sprintf("%q is not an absolute path", p))
	}
	if hasDotDot(p) {
		return invalid(call, field, fmt.Sprintf("%q has a '..' element", p))
	}
	return nil
}

func hasDotDot(p string) bool { return slices.Contains(strings.Split(p, "/"), "..") }

// checkMap bounds a labels, annotations or sysctls map: entries, bytes,
// non-empty keys of at most KeyBytes, no NUL bytes anywhere.
func (v *Validator) checkMap(call, field string, m map[string]string) error {
	l := v.limits
	if len(m) > l.MapEntries {
		return invalid(call, field, fmt.Sprintf("has %d entries, more than %d", len(m), l.MapEntries))
	}
	size := 0
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k == "" {
			return invalid(call, field, "has an empty key")
		}
		if err := checkString(call, field+" key", k, l.KeyBytes); err != nil {
			return err
		}
		if err := checkString(call, fmt.Sprintf("%s[%q]", field, k), m[k], l.MapBytes); err != nil {
			return err
		}
		size += len(k) + len(m[k])
	}
	if size > l.MapBytes {
		return invalid(call, field, fmt.Sprintf("holds %d bytes, more than %d", size, l.MapBytes))
	}
	return nil
}
