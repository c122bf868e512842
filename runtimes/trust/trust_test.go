package trust

import (
	"errors"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	both := Config{
		Handlers:       map[string]Class{"runc": Trusted, "runsc": Untrusted, "kata": Untrusted, "crun": Trusted},
		TrustedHandler: "runc", UntrustedHandler: "runsc", DefaultTrust: Trusted,
	}
	untrustedDefault := both
	untrustedDefault.DefaultTrust = Untrusted
	noRunsc := Config{Handlers: map[string]Class{"runc": Trusted}, TrustedHandler: "runc", DefaultTrust: Trusted}
	noRunscFallback := noRunsc
	noRunscFallback.FallbackTrusted = true
	noRunscUntrustedDefault := noRunsc
	noRunscUntrustedDefault.DefaultTrust = Untrusted

	untrustedDefaultHostOK := untrustedDefault
	untrustedDefaultHostOK.HostAccessTrusted = true
	untrustedDefaultRCOK := untrustedDefault
	untrustedDefaultRCOK.AllowTrustedRuntimeClass = true
	bothHostOK := both
	bothHostOK.HostAccessTrusted = true

	hint := map[string]string{AnnotationUntrusted: "true"}
	crioHint := map[string]string{AnnotationTrustedSandbox: "false"}
	tests := []struct {
		name      string
		pod       Pod
		requested string
		cfg       Config
		want      Decision
		wantErr   error
	}{
		{"default pod", Pod{}, "", both, Decision{"runc", Trusted, ReasonDefault}, nil},
		{"annotated untrusted", Pod{Annotations: hint}, "", both, Decision{"runsc", Untrusted, ReasonAnnotation}, nil},
		{"cri-o TrustedSandbox=false", Pod{Annotations: crioHint}, "", both, Decision{"runsc", Untrusted, ReasonAnnotation}, nil},
		{"annotation false is no hint", Pod{Annotations: map[string]string{AnnotationUntrusted: "false"}}, "", both, Decision{"runc", Trusted, ReasonDefault}, nil},
		{"privileged trusted pod", Pod{Privileged: true}, "", both, Decision{"runc", Trusted, ReasonPrivileged}, nil},
		{"host network trusted pod", Pod{HostNetwork: true}, "", both, Decision{"runc", Trusted, ReasonPrivileged}, nil},

		// An untrusted pod never leaves the sandbox for host access unless
		// the operator said so.
		{"annotated + privileged: refused", Pod{Privileged: true, Annotations: hint}, "", both, Decision{}, ErrHostAccess},
		{"annotated + host network: refused", Pod{HostNetwork: true, Annotations: hint}, "", both, Decision{}, ErrHostAccess},
		{"annotated + host pid: refused", Pod{HostPID: true, Annotations: crioHint}, "", both, Decision{}, ErrHostAccess},
		{"annotated + host ipc: refused", Pod{HostIPC: true, Annotations: hint}, "", both, Decision{}, ErrHostAccess},
		{"annotated + host network, host access trusted", Pod{HostNetwork: true, Annotations: hint}, "", bothHostOK, Decision{"runc", Trusted, ReasonPrivileged}, nil},
		{"default untrusted + host pid: refused", Pod{HostPID: true}, "", untrustedDefault, Decision{}, ErrHostAccess},
		{"default untrusted + privileged: refused", Pod{Privileged: true}, "", untrustedDefault, Decision{}, ErrHostAccess},
		{"default untrusted + host ipc, host access trusted", Pod{HostIPC: true}, "", untrustedDefaultHostOK, Decision{"runc", Trusted, ReasonPrivileged}, nil},
		{"default untrusted", Pod{}, "", untrustedDefault, Decision{"runsc", Untrusted, ReasonDefaultUntrusted}, nil},

		{"runtime class untrusted", Pod{}, "kata", both, Decision{"kata", Untrusted, ReasonRuntimeClass}, nil},
		{"runtime class trusted", Pod{}, "crun", both, Decision{"crun", Trusted, ReasonRuntimeClass}, nil},
		{"runtime class trusted under default untrusted: refused", Pod{}, "crun", untrustedDefault, Decision{}, ErrTrustedRuntimeClass},
		{"runtime class of the default handler under default untrusted: refused", Pod{}, "runc", untrustedDefault, Decision{}, ErrTrustedRuntimeClass},
		{"runtime class trusted under default untrusted, allowed", Pod{}, "crun", untrustedDefaultRCOK, Decision{"crun", Trusted, ReasonRuntimeClass}, nil},
		{"runtime class untrusted under default untrusted", Pod{}, "runsc", untrustedDefault, Decision{"runsc", Untrusted, ReasonRuntimeClass}, nil},
		{"runtime class untrusted with hint", Pod{Annotations: hint}, "runsc", both, Decision{"runsc", Untrusted, ReasonRuntimeClass}, nil},
		{"runtime class trusted with untrusted hint", Pod{Annotations: hint}, "runc", both, Decision{}, ErrConflict},
		{"unknown runtime class", Pod{}, "nope", both, Decision{}, ErrUnknownHandler},
		{"no untrusted handler: refused", Pod{Annotations: hint}, "", noRunsc, Decision{}, ErrNoUntrustedHandler},
		{"no untrusted handler, default untrusted: refused", Pod{}, "", noRunscUntrustedDefault, Decision{}, ErrNoUntrustedHandler},
		{"no untrusted handler, fallback", Pod{Annotations: hint}, "", noRunscFallback, Decision{"runc", Trusted, ReasonFallback}, nil},
		{"no untrusted handler, trusted pod", Pod{}, "", noRunsc, Decision{"runc", Trusted, ReasonDefault}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decide(tt.pod, tt.requested, tt.cfg)
			if got != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("Decide() = %+v, %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestRefusalsNameTheReason: a refused pod's error says why, in the
// operator's terms, and which setting would change it.
func TestRefusalsNameTheReason(t *testing.T) {
	cfg := Config{Handlers: map[string]Class{"runc": Trusted, "runsc": Untrusted}, TrustedHandler: "runc", UntrustedHandler: "runsc", DefaultTrust: Untrusted}
	_, err := Decide(Pod{HostNetwork: true, HostPID: true}, "", cfg)
	for _, want := range []string{"default-untrusted", "host network, host PID", "untrusted_host_access"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Decide(host network+PID, default untrusted) = %v, want it to name %q", err, want)
		}
	}
	_, err = Decide(Pod{}, "runc", cfg)
	if err == nil || !strings.Contains(err.Error(), "allow_trusted_runtime_class") {
		t.Errorf("Decide(RuntimeClass runc, default untrusted) = %v, want it to name allow_trusted_runtime_class", err)
	}
}
