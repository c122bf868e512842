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
	ReasonPrivileged       Reason = "privileged"         // privileged pods always run trusted
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
// (InvalidArgument); ErrNoUntrustedHandler is the node's (FailedPrecondition).
var (
	ErrUnknownHandler     = errors.New("unknown runtime handler")
	ErrConflict           = errors.New("conflicting trust hints")
	ErrNoUntrustedHandler = errors.New("no untrusted runtime handler configured")
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
}

// Pod is what the policy looks at in a pod sandbox config.
type Pod struct {
	Privileged  bool // security_context.privileged
	HostNetwork bool
	HostPID     bool
	HostIPC     bool
	Annotations map[string]string
}

// Decision is the handler chosen for a pod and why.
type Decision struct {
	Handler string
	Class   Class
	Reason  Reason
}

// Decide applies the policy to a pod that asked for runtime handler
// requested ("" when it has no RuntimeClass). It is pure.
func Decide(pod Pod, requested string, cfg Config) (Decision, error) {
	hinted := untrustedHint(pod.Annotations)
	if requested != "" {
		class, ok := cfg.Handlers[requested]
		if !ok {
			return Decision{}, fmt.Errorf("runtime handler %q is not configured (configured: %s): %w", requested, names(cfg.Handlers), ErrUnknownHandler)
		}
		if hinted && class == Trusted {
			return Decision{}, fmt.Errorf("runtime handler %q is trusted but the pod is annotated untrusted: %w", requested, ErrConflict)
		}
		return Decision{Handler: requested, Class: class, Reason: ReasonRuntimeClass}, nil
	}
	trusted := Decision{Handler: cfg.TrustedHandler, Class: Trusted, Reason: ReasonDefault}
	if pod.Privileged || pod.HostNetwork || pod.HostPID || pod.HostIPC {
		trusted.Reason = ReasonPrivileged
		return trusted, nil
	}
	var why Reason
	switch {
	case hinted:
		why = ReasonAnnotation
	case cfg.DefaultTrust == Untrusted:
		why = ReasonDefaultUntrusted
	default:
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

// untrustedHint reports whether kubelet's annotations mark the pod untrusted.
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
