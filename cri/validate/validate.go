// Package validate checks every CRI request before crisp records or
// creates anything for it: one function per request type, run by the CRI
// server's interceptor, so a malformed request is answered InvalidArgument
// with the field named and leaves nothing behind.
//
// It owns the rules of the request surface: ids, names, strings (no NUL
// bytes, bounded lengths), paths, enums, label and annotation maps, counts
// and sizes (Limits). The rules of what becomes an OCI spec belong to
// ocispec, which exports them as CheckSandbox and CheckContainer; this
// package calls those rather than repeating them. Checks that need crisp's
// state (does the pod exist, is it privileged) run in the handlers.
//
// It imports cri-api and ocispec only: no db, no runtimes, no gRPC.
// docs/malformed-input.md lists the classes of bad input covered.
package validate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/ocispec"
)

// ErrInvalid marks a request that fails validation. Every error wraps it
// (or ocispec.ErrInvalid) and names the call, the object and the field.
var ErrInvalid = errors.New("invalid argument")

// Validator checks requests. Its zero value is not ready: use New. It is
// safe for concurrent use.
type Validator struct {
	limits Limits
	node   ocispec.Node
}

// New returns a validator with limits l that looks at the node through
// stat (os.Stat when nil: mount sources, device nodes and seccomp profiles
// must exist).
func New(l Limits, stat func(string) (fs.FileInfo, error)) *Validator {
	if stat == nil {
		stat = os.Stat
	}
	return &Validator{limits: l, node: ocispec.Node{Stat: stat}}
}

// Request checks any CRI request. Types it does not know pass: a newer
// cri-api may add calls, which then answer Unimplemented.
func (v *Validator) Request(req any) error {
	if err := v.check(req); !errors.Is(err, errUnknownRequest) {
		return err
	}
	return nil
}

// errUnknownRequest is check's answer for a type it has no case for; a
// test requires a case for every cri-api request.
var errUnknownRequest = errors.New("unknown request type")

// check dispatches by request type.
func (v *Validator) check(req any) error {
	switch r := req.(type) {
	case *runtimeapi.RunPodSandboxRequest:
		return v.RunPodSandbox(r)
	case *runtimeapi.CreateContainerRequest:
		return v.CreateContainer(r)
	case *runtimeapi.StopPodSandboxRequest:
		return podID("stop pod sandbox", r.PodSandboxId)
	case *runtimeapi.RemovePodSandboxRequest:
		return podID("remove pod sandbox", r.PodSandboxId)
	case *runtimeapi.PodSandboxStatusRequest:
		return podID("pod sandbox status", r.PodSandboxId)
	case *runtimeapi.PodSandboxStatsRequest:
		return podID("pod sandbox stats", r.PodSandboxId)
	case *runtimeapi.StartContainerRequest:
		return containerID("start container", r.ContainerId)
	case *runtimeapi.StopContainerRequest:
		return v.StopContainer(r)
	case *runtimeapi.RemoveContainerRequest:
		return containerID("remove container", r.ContainerId)
	case *runtimeapi.ContainerStatusRequest:
		return containerID("container status", r.ContainerId)
	case *runtimeapi.ContainerStatsRequest:
		return containerID("container stats", r.ContainerId)
	case *runtimeapi.ReopenContainerLogRequest:
		return containerID("reopen container log", r.ContainerId)
	case *runtimeapi.CheckpointContainerRequest:
		return containerID("checkpoint container", r.ContainerId)
	case *runtimeapi.UpdateContainerResourcesRequest:
		return v.UpdateContainerResources(r)
	case *runtimeapi.ExecSyncRequest:
		return v.ExecSync(r)
	case *runtimeapi.ExecRequest:
		return v.Exec(r)
	case *runtimeapi.AttachRequest:
		return v.Attach(r)
	case *runtimeapi.PortForwardRequest:
		return v.PortForward(r)
	case *runtimeapi.ListPodSandboxRequest:
		return v.podFilter("list pod sandboxes", r.GetFilter().GetId(), r.GetFilter().GetState().GetState(), r.GetFilter().GetLabelSelector())
	case *runtimeapi.StreamPodSandboxesRequest:
		return v.podFilter("stream pod sandboxes", r.GetFilter().GetId(), r.GetFilter().GetState().GetState(), r.GetFilter().GetLabelSelector())
	case *runtimeapi.ListContainersRequest:
		return v.ListContainers("list containers", r.GetFilter())
	case *runtimeapi.StreamContainersRequest:
		return v.ListContainers("stream containers", r.GetFilter())
	case *runtimeapi.ListContainerStatsRequest:
		return v.statsFilter("list container stats", r.GetFilter())
	case *runtimeapi.StreamContainerStatsRequest:
		return v.statsFilter("stream container stats", r.GetFilter())
	case *runtimeapi.ListPodSandboxStatsRequest:
		return v.podStatsFilter("list pod sandbox stats", r.GetFilter())
	case *runtimeapi.StreamPodSandboxStatsRequest:
		return v.podStatsFilter("stream pod sandbox stats", r.GetFilter())
	case *runtimeapi.ListPodSandboxMetricsRequest, *runtimeapi.StreamPodSandboxMetricsRequest,
		*runtimeapi.ListMetricDescriptorsRequest:
		return nil // nothing a client can get wrong
	case *runtimeapi.UpdateRuntimeConfigRequest:
		return UpdateRuntimeConfig(r)
	case *runtimeapi.UpdatePodSandboxResourcesRequest:
		return v.UpdatePodSandboxResources(r)
	case *runtimeapi.CheckpointPodRequest:
		return podID("checkpoint pod", r.PodSandboxId)
	case *runtimeapi.RestorePodRequest:
		return nil // Unimplemented; nothing to check before that
	case *runtimeapi.PullImageRequest:
		return v.PullImage(r)
	case *runtimeapi.ImageStatusRequest:
		return v.imageSpec("image status", "image", r.GetImage(), true)
	case *runtimeapi.RemoveImageRequest:
		return v.imageSpec("remove image", "image", r.GetImage(), true)
	case *runtimeapi.ListImagesRequest:
		return v.imageSpec("list images", "filter.image", r.GetFilter().GetImage(), false)
	case *runtimeapi.StreamImagesRequest:
		return v.imageSpec("stream images", "filter.image", r.GetFilter().GetImage(), false)
	case *runtimeapi.VersionRequest:
		return oneLine("version", "version", r.Version, maxName)
	case *runtimeapi.StatusRequest, *runtimeapi.RuntimeConfigRequest, *runtimeapi.ImageFsInfoRequest,
		*runtimeapi.GetEventsRequest:
		return nil // no fields to get wrong
	}
	return fmt.Errorf("%T: %w", req, errUnknownRequest)
}

// invalid is a validation error of call: "<call>: <field> <why>".
func invalid(call, field, why string) error {
	return fmt.Errorf("%s: %s %s: %w", call, field, why, ErrInvalid)
}
