package cri

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
)

// sandboxName is a pod's unique name, as kubelet expects runtimes to build
// it: one per pod uid and attempt.
func sandboxName(m *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("k8s_POD_%s_%s_%s_%d", m.Name, m.Namespace, m.Uid, m.Attempt)
}

// containerName is a container's unique name within its pod's identity.
func containerName(m *runtimeapi.ContainerMetadata, pod *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("k8s_%s_%s_%s_%s_%d", m.Name, pod.Name, pod.Namespace, pod.Uid, m.Attempt)
}

// configHash identifies a create request, so that kubelet's retry of a
// timed-out call is told from a different request under the same name.
// Deterministic marshalling makes equal configs hash equal.
func configHash(m proto.Message, extra ...string) (blob []byte, hash string, err error) {
	blob, err = proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, "", err
	}
	return blob, db.ConfigHash(blob, extra...), nil
}
