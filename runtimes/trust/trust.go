// Package trust decides which runtime handler runs a pod, and why: the
// trust policy of DESIGN.md as one pure function. It imports nothing.
package trust

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Class is a handler's trust class.
type Class string

// Trust classes.
const (
	Trusted   Class = "trusted"
	Untrusted Class = "untrusted"
)

// Reason says why a pod got its handler; it is stored on the sandbox row.
type Reason string

// Reasons, in the order the policy considers them.
const (
	ReasonRuntimeClass     Reason = "runtime-class"      // the pod named a handler
	ReasonPrivileged       Reason = "privileged"         // trusted pods with host access
	ReasonAnnotation       Reason = "annotation"         // kubelet hinted untrusted
	ReasonDefaultUntrusted Reason = "default-untrusted"  // default_workload_trust = "untrusted"
	ReasonFallback         Reason = "untrusted-fallback" // untrusted, but no untrusted handler and fallback allowed
	ReasonDefault          Reason = "default"
)

// Annotations that mark a pod untrusted.
const (
	AnnotationUntrusted      = "io.kubernetes.cri.untrusted-workload" // "true"
	AnnotationTrustedSandbox = "io.kubernetes.cri-o.TrustedSandbox"   // "false"
)

// Errors. ErrUnknownHandler and ErrConflict are the caller's fault
// (InvalidArgument); ErrNoUntrustedHandler, ErrHostAccess and
// ErrTrustedRuntimeClass are refusals of the node's policy
// (FailedPrecondition).
var (
	ErrUnknownHandler      = errors.New("unknown runtime handler")
	ErrConflict            = errors.New("conflicting trust hints")
	ErrNoUntrustedHandler  = errors.New("no untrusted runtime handler configured")
	ErrHostAccess          = errors.New("an untrusted pod may not have host access")
	ErrTrustedRuntimeClass = errors.New("trusted runtime class not allowed")
)

// Config is the policy's view of crispd's configuration.
type Config struct {
	Handlers         map[string]Class // every configured handler and its class
	TrustedHandler   string           // the handler for trusted pods (runc)
	UntrustedHandler string           // the handler for untrusted pods (runsc); "" = none
	DefaultTrust     Class            // default_workload_trust
	// FallbackTrusted runs untrusted pods on the trusted handler when there
	// is no untrusted one (untrusted_fallback = "trusted"); off, they are
	// refused: crisp fails closed.
	FallbackTrusted bool
	// HostAccessTrusted runs an untrusted pod that asks for host access on
	// the trusted handler (untrusted_host_access = "trusted"); off, it is
	// refused, as containerd does: gVisor cannot share the host's
	// namespaces, and moving the pod out of the sandbox must be the
	// operator's choice.
	HostAccessTrusted bool
	// AllowTrustedRuntimeClass lets a RuntimeClass name a trusted handler
	// when default_workload_trust is untrusted (allow_trusted_runtime_class);
	// off, such pods are refused, so a RuntimeClass cannot opt a pod out of
	// the sandbox on a node that sandboxes everything.
	AllowTrustedRuntimeClass bool
}

// Pod is what the policy looks at in a pod sandbox config.
type Pod struct {
	Privileged  bool // security_context.privileged
	HostNetwork bool
	HostPID     bool
	HostIPC     bool
	Annotations map[string]string
}

// hostAccess names what of the host a pod asks for, "" for nothing.
func (p Pod) hostAccess() string {
	var what []string
	for _, a := range []struct {
		on   bool
		name string
	}{{p.Privileged, "privileged"}, {p.HostNetwork, "host network"}, {p.HostPID, "host PID"}, {p.HostIPC, "host IPC"}} {
		if a.on {
			what = append(what, a.name)
		}
	}
	return strings.Join(what, ", ")
}

// Decision is the handler chosen for a pod and why.
type Decision struct {
	Handler string
	Class   Class
	Reason  Reason
}

// Decide applies the policy to a pod that asked for runtime handler
// requested ("" when it has no RuntimeClass). It is pure.
//
//  1. A RuntimeClass must name a configured handler. A trusted one with an
//     untrusted annotation is a conflict; under default_workload_trust =
//     "untrusted" a trusted one needs allow_trusted_runtime_class.
//  2. A pod that is untrusted (annotation, or the default) and asks for
//     host access (privileged, host network/PID/IPC) is refused unless
//     untrusted_host_access = "trusted", which runs it trusted.
//  3. Other pods with host access run trusted (reason privileged).
//  4. Untrusted pods run on the untrusted handler; without one they are
//     refused unless untrusted_fallback = "trusted".
//  5. Everything else runs trusted.
func Decide(pod Pod, requested string, cfg Config) (Decision, error) {
	hinted := untrustedHint(pod.Annotations)
	if requested != "" {
		class, ok := cfg.Handlers[requested]
		if !ok {
			return Decision{}, fmt.Errorf("runtime handler %q is not configured (configured: %s): %w", requested, names(cfg.Handlers), ErrUnknownHandler)
		}
		if class == Trusted && hinted {
			return Decision{}, fmt.Errorf("runtime handler %q is trusted but the pod is annotated untrusted: %w", requested, ErrConflict)
		}
		if class == Trusted && cfg.DefaultTrust == Untrusted && !cfg.AllowTrustedRuntimeClass {
			return Decision{}, fmt.Errorf("runtime handler %q is trusted and default_workload_trust is untrusted; set allow_trusted_runtime_class = true to let a RuntimeClass choose it: %w", requested, ErrTrustedRuntimeClass)
		}
		return Decision{Handler: requested, Class: class, Reason: ReasonRuntimeClass}, nil
	}
	trusted := Decision{Handler: cfg.TrustedHandler, Class: Trusted, Reason: ReasonDefault}
	var why Reason
	switch {
	case hinted:
		why = ReasonAnnotation
	case cfg.DefaultTrust == Untrusted:
		why = ReasonDefaultUntrusted
	}
	if access := pod.hostAccess(); access != "" {
		if why != "" && !cfg.HostAccessTrusted {
			return Decision{}, fmt.Errorf("pod is untrusted (%s) and asks for %s; set untrusted_host_access = \"trusted\" to run such pods on %q: %w", why, access, cfg.TrustedHandler, ErrHostAccess)
		}
		trusted.Reason = ReasonPrivileged
		return trusted, nil
	}
	if why == "" {
		return trusted, nil
	}
	if cfg.UntrustedHandler == "" {
		if cfg.FallbackTrusted {
			trusted.Reason = ReasonFallback
			return trusted, nil
		}
		return Decision{}, fmt.Errorf("pod is untrusted (%s) but %w; set untrusted_fallback = \"trusted\" to run such pods on %q", why, ErrNoUntrustedHandler, cfg.TrustedHandler)
	}
	return Decision{Handler: cfg.UntrustedHandler, Class: Untrusted, Reason: why}, nil
}

// untrustedHint reports kubelet's untrusted-workload annotations.
func untrustedHint(a map[string]string) bool {
	return strings.EqualFold(a[AnnotationUntrusted], "true") || strings.EqualFold(a[AnnotationTrustedSandbox], "false")
}

func names(m map[string]Class) string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
