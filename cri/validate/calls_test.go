package validate

import (
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestOtherCalls: the requests besides RunPodSandbox and CreateContainer,
// each valid as kubelet or crictl sends it and each malformed way refused
// with the field named.
func TestOtherCalls(t *testing.T) {
	v := newTestValidator()
	for _, tt := range otherCallCases() {
		t.Run(tt.class+"/"+tt.name, func(t *testing.T) {
			err := v.Request(tt.req)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantInvalid(t, err, tt.want...)
		})
	}
}

type callCase struct {
	class, name string
	req         any
	want        []string // nil = accepted
}

func otherCallCases() []callCase {
	id := "0f3e5c9d2a7b"
	return []callCase{
		{"", "stop pod", &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}, nil},
		{"missing", "stop pod without id", &runtimeapi.StopPodSandboxRequest{}, []string{"stop pod sandbox", "pod_sandbox_id is empty"}},
		{"id", "remove pod with a path for id", &runtimeapi.RemovePodSandboxRequest{PodSandboxId: "../../etc"}, []string{"remove pod sandbox", "not an id"}},
		{"too-long", "pod status with a 129-byte id", &runtimeapi.PodSandboxStatusRequest{PodSandboxId: strings.Repeat("a", 129)}, []string{"pod_sandbox_id"}},
		{"id", "start with white space in the id", &runtimeapi.StartContainerRequest{ContainerId: "abc def"}, []string{"start container", "container_id"}},
		{"missing", "container status without id", &runtimeapi.ContainerStatusRequest{}, []string{"container_id is empty"}},
		{"missing", "remove container without id", &runtimeapi.RemoveContainerRequest{}, []string{"remove container"}},
		{"missing", "stats without id", &runtimeapi.ContainerStatsRequest{}, []string{"container stats"}},
		{"missing", "reopen log without id", &runtimeapi.ReopenContainerLogRequest{}, []string{"reopen container log"}},
		{"", "stop container", &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 30}, nil},
		{"out-of-range", "stop container, negative timeout", &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: -1}, []string{"timeout", "negative"}},
		{"", "exec sync", &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"cat", "/tmp/healthy"}, Timeout: 1}, nil},
		{"missing", "exec sync without cmd", &runtimeapi.ExecSyncRequest{ContainerId: id}, []string{"exec sync in " + id, "cmd is empty"}},
		{"missing", "exec sync, empty first word", &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{""}}, []string{"cmd[0] is empty"}},
		{"out-of-range", "exec sync, negative timeout", &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}, Timeout: -5}, []string{"timeout"}},
		{"too-long", "exec sync, huge word", &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"echo", strings.Repeat("x", 200<<10)}}, []string{"cmd[1]"}},
		{"", "exec with a terminal", &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh"}, Tty: true, Stdin: true, Stdout: true}, nil},
		{"streams", "exec with no stream", &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh"}}, []string{"stdin, stdout and stderr"}},
		{"streams", "exec, terminal and stderr", &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh"}, Tty: true, Stdout: true, Stderr: true}, []string{"stderr", "tty"}},
		{"missing", "exec without cmd", &runtimeapi.ExecRequest{ContainerId: id, Stdout: true}, []string{"cmd is empty"}},
		{"", "attach", &runtimeapi.AttachRequest{ContainerId: id, Stdout: true, Stderr: true}, nil},
		{"streams", "attach with no stream", &runtimeapi.AttachRequest{ContainerId: id}, []string{"attach to " + id}},
		{"", "port forward without ports", &runtimeapi.PortForwardRequest{PodSandboxId: id}, nil},
		{"out-of-range", "port forward to port 0", &runtimeapi.PortForwardRequest{PodSandboxId: id, Port: []int32{80, 0}}, []string{"port[1]"}},
		{"out-of-range", "port forward to port 65536", &runtimeapi.PortForwardRequest{PodSandboxId: id, Port: []int32{65536}}, []string{"port[0]"}},
		{"", "list containers by state", &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}}, nil},
		{"unknown-enum", "list containers, state 9", &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: 9}}}, []string{"filter.state"}},
		{"id", "list containers, bad pod id", &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: "a/b"}}, []string{"filter.pod_sandbox_id"}},
		{"unknown-enum", "list pods, state 4", &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: 4}}}, []string{"filter.state"}},
		{"missing", "list pods, empty selector key", &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"": "x"}}}, []string{"label_selector", "empty key"}},
		{"id", "container stats filter, bad id", &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{Id: "\x00"}}, []string{"filter.id"}},
		{"out-of-range", "update resources, negative shares", &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: &runtimeapi.LinuxContainerResources{CpuShares: -3}}, []string{"update container resources of " + id, "cpu_shares"}},
		{"", "update resources", &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: &runtimeapi.LinuxContainerResources{CpuShares: 3, MemoryLimitInBytes: 1 << 30}}, nil},
		{"format", "runtime config, bad CIDR", &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.244.0.0/33"}}}, []string{"pod_cidr"}},
		{"", "runtime config, dual stack", &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.244.0.0/24,fd00::/64"}}}, nil},
		{"", "pull", &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "registry.example/app@sha256:0cfdb5b3"}}, nil},
		{"missing", "pull without image", &runtimeapi.PullImageRequest{}, []string{"pull image", "image.image is empty"}},
		{"white-space", "pull, newline in image", &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox\nlatest"}}, []string{"image.image"}},
		{"nul", "pull, NUL in password", &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}, Auth: &runtimeapi.AuthConfig{Password: "p\x00"}}, []string{"auth.password"}},
		{"missing", "image status without image", &runtimeapi.ImageStatusRequest{}, []string{"image status"}},
		{"missing", "remove image without image", &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{}}, []string{"remove image"}},
		{"", "list images", &runtimeapi.ListImagesRequest{}, nil},
		{"", "status", &runtimeapi.StatusRequest{Verbose: true}, nil},
		{"", "unknown request type passes", struct{}{}, nil},
	}
}
