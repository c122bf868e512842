package validate

import (
	"fmt"
	"net"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/ocispec"
)

// StopContainer checks the id and that the grace period is not negative.
func (v *Validator) StopContainer(r *runtimeapi.StopContainerRequest) error {
	if err := containerID("stop container", r.ContainerId); err != nil {
		return err
	}
	if r.Timeout < 0 {
		return invalid("stop container "+r.ContainerId, "timeout", fmt.Sprintf("%d is negative", r.Timeout))
	}
	return nil
}

// UpdateContainerResources checks the id and the new resources as at
// create.
func (v *Validator) UpdateContainerResources(r *runtimeapi.UpdateContainerResourcesRequest) error {
	call := "update container resources"
	if err := containerID(call, r.ContainerId); err != nil {
		return err
	}
	if _, err := ocispec.Resources(r.GetLinux(), false, nil); err != nil {
		return fmt.Errorf("%s of %s: linux: %w", call, r.ContainerId, err)
	}
	return v.checkMap(call+" of "+r.ContainerId, "annotations", r.Annotations)
}

// UpdatePodSandboxResources checks the id and the pod's new resources.
func (v *Validator) UpdatePodSandboxResources(r *runtimeapi.UpdatePodSandboxResourcesRequest) error {
	call := "update pod sandbox resources"
	if err := podID(call, r.PodSandboxId); err != nil {
		return err
	}
	for _, res := range []struct {
		field string
		r     *runtimeapi.LinuxContainerResources
	}{{"overhead", r.GetOverhead()}, {"resources", r.GetResources()}} {
		if _, err := ocispec.Resources(res.r, false, nil); err != nil {
			return fmt.Errorf("%s of %s: %s: %w", call, r.PodSandboxId, res.field, err)
		}
	}
	return nil
}

// ExecSync checks the id, the command and that the timeout is not
// negative.
func (v *Validator) ExecSync(r *runtimeapi.ExecSyncRequest) error {
	call := "exec sync"
	if err := containerID(call, r.ContainerId); err != nil {
		return err
	}
	call += " in " + r.ContainerId
	if err := v.checkCmd(call, r.Cmd); err != nil {
		return err
	}
	if r.Timeout < 0 {
		return invalid(call, "timeout", fmt.Sprintf("%d is negative", r.Timeout))
	}
	return nil
}

// Exec checks the id, the command and the streams: at least one, and no
// stderr with a terminal (a terminal has one output stream).
func (v *Validator) Exec(r *runtimeapi.ExecRequest) error {
	call := "exec"
	if err := containerID(call, r.ContainerId); err != nil {
		return err
	}
	call += " in " + r.ContainerId
	if err := v.checkCmd(call, r.Cmd); err != nil {
		return err
	}
	return checkStreams(call, r.Stdin, r.Stdout, r.Stderr, r.Tty)
}

// Attach checks the id and the streams, as Exec.
func (v *Validator) Attach(r *runtimeapi.AttachRequest) error {
	call := "attach"
	if err := containerID(call, r.ContainerId); err != nil {
		return err
	}
	return checkStreams(call+" to "+r.ContainerId, r.Stdin, r.Stdout, r.Stderr, r.Tty)
}

func checkStreams(call string, stdin, stdout, stderr, tty bool) error {
	if !stdin && !stdout && !stderr {
		return invalid(call, "stdin, stdout and stderr", "are all false; one is needed")
	}
	if tty && stderr {
		return invalid(call, "stderr", "is set with tty, which has one output stream")
	}
	return nil
}

// checkCmd requires a command whose first word is not empty, bounded as a
// container's process.
func (v *Validator) checkCmd(call string, cmd []string) error {
	if len(cmd) == 0 {
		return invalid(call, "cmd", "is empty")
	}
	if cmd[0] == "" {
		return invalid(call, "cmd[0]", "is empty")
	}
	return v.checkProcess(call, "cmd", cmd, nil, nil)
}

// PortForward checks the pod id and the ports.
func (v *Validator) PortForward(r *runtimeapi.PortForwardRequest) error {
	call := "port forward"
	if err := podID(call, r.PodSandboxId); err != nil {
		return err
	}
	if len(r.Port) > v.limits.PortMappings {
		return invalid(call+" to "+r.PodSandboxId, "port", fmt.Sprintf("has %d ports, more than %d", len(r.Port), v.limits.PortMappings))
	}
	for i, p := range r.Port {
		if p <= 0 || p > 65535 {
			return invalid(call+" to "+r.PodSandboxId, fmt.Sprintf("port[%d]", i), fmt.Sprintf("%d is outside 1..65535", p))
		}
	}
	return nil
}

// podFilter checks a pod filter: an id (or prefix), a known state, a
// label selector.
func (v *Validator) podFilter(call, id string, state runtimeapi.PodSandboxState, labels map[string]string) error {
	if id != "" {
		if err := checkID(call, "filter.id", id); err != nil {
			return err
		}
	}
	if _, ok := runtimeapi.PodSandboxState_name[int32(state)]; !ok {
		return invalid(call, "filter.state", fmt.Sprintf("%d is not a pod sandbox state", state))
	}
	return v.checkMap(call, "filter.label_selector", labels)
}

// ListContainers checks a container filter.
func (v *Validator) ListContainers(call string, f *runtimeapi.ContainerFilter) error {
	if f == nil {
		return nil
	}
	if f.Id != "" {
		if err := checkID(call, "filter.id", f.Id); err != nil {
			return err
		}
	}
	if f.PodSandboxId != "" {
		if err := checkID(call, "filter.pod_sandbox_id", f.PodSandboxId); err != nil {
			return err
		}
	}
	if st := f.GetState().GetState(); runtimeapi.ContainerState_name[int32(st)] == "" {
		return invalid(call, "filter.state", fmt.Sprintf("%d is not a container state", st))
	}
	return v.checkMap(call, "filter.label_selector", f.LabelSelector)
}

func (v *Validator) statsFilter(call string, f *runtimeapi.ContainerStatsFilter) error {
	return v.ListContainers(call, &runtimeapi.ContainerFilter{Id: f.GetId(), PodSandboxId: f.GetPodSandboxId(), LabelSelector: f.GetLabelSelector()})
}

func (v *Validator) podStatsFilter(call string, f *runtimeapi.PodSandboxStatsFilter) error {
	return v.podFilter(call, f.GetId(), runtimeapi.PodSandboxState_SANDBOX_READY, f.GetLabelSelector())
}

// UpdateRuntimeConfig checks the node's pod CIDRs: a comma-separated list
// of CIDRs, or none.
func UpdateRuntimeConfig(r *runtimeapi.UpdateRuntimeConfigRequest) error {
	cidrs := r.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if cidrs == "" {
		return nil
	}
	if err := checkString("update runtime config", "network_config.pod_cidr", cidrs, maxValue); err != nil {
		return err
	}
	for c := range strings.SplitSeq(cidrs, ",") {
		if _, _, err := net.ParseCIDR(strings.TrimSpace(c)); err != nil {
			return invalid("update runtime config", "network_config.pod_cidr", fmt.Sprintf("%q is not a CIDR", c))
		}
	}
	return nil
}

// PullImage checks the reference and the credentials' strings; whether the
// reference parses is the image store's to say.
func (v *Validator) PullImage(r *runtimeapi.PullImageRequest) error {
	call := "pull image"
	if err := v.imageSpec(call, "image", r.GetImage(), true); err != nil {
		return err
	}
	call += " " + r.GetImage().GetImage()
	a := r.GetAuth()
	for _, f := range []struct{ field, v string }{
		{"auth.username", a.GetUsername()}, {"auth.password", a.GetPassword()}, {"auth.auth", a.GetAuth()},
		{"auth.server_address", a.GetServerAddress()}, {"auth.identity_token", a.GetIdentityToken()},
		{"auth.registry_token", a.GetRegistryToken()},
	} {
		if err := checkString(call, f.field, f.v, 64<<10); err != nil {
			return err
		}
	}
	return nil
}
