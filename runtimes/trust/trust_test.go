package trust

import (
	"errors"
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
		{"privileged beats annotation", Pod{Privileged: true, Annotations: hint}, "", both, Decision{"runc", Trusted, ReasonPrivileged}, nil},
		{"host network is privileged", Pod{HostNetwork: true, Annotations: hint}, "", both, Decision{"runc", Trusted, ReasonPrivileged}, nil},
		{"host pid is privileged", Pod{HostPID: true}, "", untrustedDefault, Decision{"runc", Trusted, ReasonPrivileged}, nil},
		{"host ipc is privileged", Pod{HostIPC: true}, "", untrustedDefault, Decision{"runc", Trusted, ReasonPrivileged}, nil},
		{"default untrusted", Pod{}, "", untrustedDefault, Decision{"runsc", Untrusted, ReasonDefaultUntrusted}, nil},
		{"default untrusted, privileged", Pod{Privileged: true}, "", untrustedDefault, Decision{"runc", Trusted, ReasonPrivileged}, nil},
		{"runtime class untrusted", Pod{}, "kata", both, Decision{"kata", Untrusted, ReasonRuntimeClass}, nil},
		{"runtime class trusted", Pod{}, "crun", untrustedDefault, Decision{"crun", Trusted, ReasonRuntimeClass}, nil},
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
