package ocispec

import (
	"fmt"
	"maps"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/crisp-cri/crisp/db/record"
)

// Annotations ocispec sets. They are the keys containerd uses, which runsc
// reads to group a pod's containers into one gVisor sandbox. A container's
// spec also carries its record, whose keys are db/record's.
const (
	AnnotationContainerType    = "io.kubernetes.cri.container-type"
	AnnotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
	AnnotationImageName        = "io.kubernetes.cri.image-name"
)

// Values of AnnotationContainerType: runsc starts a gVisor sandbox for a
// "sandbox" and joins the one named by AnnotationSandboxID for a
// "container".
const (
	ContainerTypeSandbox   = "sandbox"
	ContainerTypeContainer = "container"
)

// runtimeSandboxID is the value of AnnotationSandboxID: runsc looks the
// sandbox up by its root (infra) container's id, so that is what it gets.
func (sb *Sandbox) runtimeSandboxID() string {
	if sb.RuntimeType == RuntimeRunsc && sb.InfraID != "" {
		return sb.InfraID
	}
	return sb.ID
}

// reservedAnnotation reports keys a pod may not set itself: they steer
// runsc's sandbox grouping, and ocispec sets the ones that matter.
func reservedAnnotation(k string) bool {
	return strings.HasPrefix(k, "io.kubernetes.cri.") || strings.HasPrefix(k, "io.kubernetes.cri-o.")
}

// Passthrough says which CRI annotations reach a spec: only keys that
// match one of its patterns, per runtime handler (containerd's
// pod_annotations and container_annotations). A pattern is a key, or a
// prefix ending in "*". Everything else stays in crisp's records, out of
// the runtime's reach: runtimes act on some annotations (gVisor's
// dev.gvisor.*), which must be the operator's to allow, not a tenant's.
type Passthrough struct {
	Pod       []string // pod annotations, into the infra's and every container's spec
	Container []string // container annotations, into the container's spec
}

// matchAnnotation reports whether key matches one of patterns.
func matchAnnotation(key string, patterns []string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(key, prefix) || p == key {
			return true
		}
	}
	return false
}

// passAnnotations copies the keys of m that match patterns into out, never
// reserved ones.
func passAnnotations(out, m map[string]string, patterns []string) {
	for k, v := range m {
		if matchAnnotation(k, patterns) && !reservedAnnotation(k) {
			out[k] = v
		}
	}
}

// podAnnotations adds the standard keys describing the pod.
func podAnnotations(out map[string]string, sb *Sandbox, containerType string) {
	out[AnnotationContainerType] = containerType
	out[AnnotationSandboxID] = sb.runtimeSandboxID()
	if m := sb.Config.GetMetadata(); m != nil {
		out[AnnotationSandboxName] = m.Name
		out[AnnotationSandboxNamespace] = m.Namespace
		out[AnnotationSandboxUID] = m.Uid
	}
}

func containerAnnotations(in *ContainerInput) (map[string]string, error) {
	out := map[string]string{}
	passAnnotations(out, in.Sandbox.Config.GetAnnotations(), in.Passthrough.Pod)
	passAnnotations(out, in.Config.Annotations, in.Passthrough.Container)
	podAnnotations(out, &in.Sandbox, ContainerTypeContainer)
	if n := in.Config.GetMetadata().GetName(); n != "" {
		out[AnnotationContainerName] = n
	}
	img := in.Config.GetImage()
	if n := img.GetUserSpecifiedImage(); n != "" {
		out[AnnotationImageName] = n
	} else if n := img.GetImage(); n != "" {
		out[AnnotationImageName] = n
	}
	if err := recordAnnotations(out, in); err != nil {
		return nil, err
	}
	maps.Copy(out, in.Annotations)
	return out, nil
}

// recordAnnotations adds the container's record, from which the reconciler
// rebuilds its row if the database is lost.
func recordAnnotations(out map[string]string, in *ContainerInput) error {
	blob, err := proto.MarshalOptions{Deterministic: true}.Marshal(in.Config)
	if err != nil {
		return fmt.Errorf("encode container config: %w", err)
	}
	return record.WriteContainer(out, record.Container{
		SandboxID: in.Sandbox.ID, Name: in.Name, KubeName: in.Config.GetMetadata().GetName(),
		Attempt: in.Config.GetMetadata().GetAttempt(), Image: in.Config.GetImage().GetImage(), ImageRef: in.ImageRef,
		LogPath: in.LogPath, Handler: in.Sandbox.Handler,
		Labels: in.Config.GetLabels(), Annotations: in.Config.GetAnnotations(), Config: blob,
	})
}
