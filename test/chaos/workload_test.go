package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The CRI calls of the workload.
const (
	opRunPod    = "RunPodSandbox"
	opCreate    = "CreateContainer"
	opStart     = "StartContainer"
	opStop      = "StopContainer"
	opRemove    = "RemoveContainer"
	opStopPod   = "StopPodSandbox"
	opRemovePod = "RemovePodSandbox"
)

// The workload's size: small, so that a 2-core machine keeps up.
const (
	maxPods          = 3 // workload pods at a time, besides the keepers
	maxPodContainers = 3
)

// op is one CRI call of the workload, kept whole so that it can be retried
// the way kubelet retries a call that failed.
type op struct {
	kind    string
	pod     *runtimeapi.PodSandboxConfig // RunPodSandbox
	podID   string                       // CreateContainer, StopPodSandbox, RemovePodSandbox
	ctr     *runtimeapi.ContainerConfig  // CreateContainer
	ctrID   string                       // StartContainer, StopContainer, RemoveContainer
	ctrName string                       // for messages
	timeout int64                        // StopContainer's grace period, seconds
}

func (o op) String() string {
	switch o.kind {
	case opRunPod:
		return fmt.Sprintf("%s(%s)", o.kind, o.pod.Metadata.Name)
	case opCreate:
		return fmt.Sprintf("%s(%s in pod %s)", o.kind, o.ctr.Metadata.Name, short(o.podID))
	case opStop:
		return fmt.Sprintf("%s(%s %s, timeout %ds)", o.kind, o.ctrName, short(o.ctrID), o.timeout)
	case opStart, opRemove:
		return fmt.Sprintf("%s(%s %s)", o.kind, o.ctrName, short(o.ctrID))
	}
	return fmt.Sprintf("%s(%s)", o.kind, short(o.podID))
}

// signals is the container or pod whose containers the call may kill,
// "" for none.
func (o op) signals() string {
	switch o.kind {
	case opStop, opRemove:
		return o.ctrID
	case opStopPod, opRemovePod:
		return o.podID
	}
	return ""
}

// do makes the call.
func (o op) do(ctx context.Context, rt runtimeapi.RuntimeServiceClient) error {
	var err error
	switch o.kind {
	case opRunPod:
		_, err = rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: o.pod})
	case opCreate:
		_, err = rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: o.podID, Config: o.ctr})
	case opStart:
		_, err = rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: o.ctrID})
	case opStop:
		_, err = rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: o.ctrID, Timeout: o.timeout})
	case opRemove:
		_, err = rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: o.ctrID})
	case opStopPod:
		_, err = rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: o.podID})
	case opRemovePod:
		_, err = rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: o.podID})
	}
	return err
}

// world is the workload's part of the node, as the CRI lists it.
type world struct {
	pods []*runtimeapi.PodSandbox
	ctrs []*runtimeapi.Container
}

var workLabel = map[string]string{"chaos": "work"}

func list(ctx context.Context, rt runtimeapi.RuntimeServiceClient) (world, error) {
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: workLabel}})
	if err != nil {
		return world{}, err
	}
	ctrs, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{LabelSelector: workLabel}})
	if err != nil {
		return world{}, err
	}
	return world{pods: pods.Items, ctrs: ctrs.Containers}, nil
}

func (w world) podsIn(state runtimeapi.PodSandboxState) []*runtimeapi.PodSandbox {
	var out []*runtimeapi.PodSandbox
	for _, p := range w.pods {
		if p.State == state {
			out = append(out, p)
		}
	}
	return out
}

func (w world) containersOf(podID string) []*runtimeapi.Container {
	var out []*runtimeapi.Container
	for _, c := range w.ctrs {
		if c.PodSandboxId == podID {
			out = append(out, c)
		}
	}
	return out
}

// containersIn lists the containers in state whose pods are ready.
func (w world) containersIn(state runtimeapi.ContainerState) []*runtimeapi.Container {
	ready := map[string]bool{}
	for _, p := range w.podsIn(runtimeapi.PodSandboxState_SANDBOX_READY) {
		ready[p.Id] = true
	}
	var out []*runtimeapi.Container
	for _, c := range w.ctrs {
		if c.State == state && ready[c.PodSandboxId] {
			out = append(out, c)
		}
	}
	return out
}

// arming tells, by failpoint name prefix, the calls that pass the
// failpoint and those that make way for them (room for a new pod, a
// created container to start): the workload favours both while that
// failpoint is armed.
var arming = map[string]struct{ pass, help []string }{
	"pod.run.":          {pass: []string{opRunPod}, help: []string{opRemovePod}},
	"pod.infra.":        {pass: []string{opRunPod}, help: []string{opRemovePod}},
	"container.create.": {pass: []string{opCreate}, help: []string{opRemove, opRunPod}},
	"container.start.":  {pass: []string{opStart}, help: []string{opCreate}},
	"container.stop.":   {pass: []string{opStop}, help: []string{opStart, opCreate}},
	"container.remove.": {pass: []string{opRemove, opRemovePod}, help: []string{opCreate}},
	"pod.stop.":         {pass: []string{opStopPod, opRemovePod}, help: []string{opRunPod}},
	"pod.remove.":       {pass: []string{opRemovePod}, help: []string{opRunPod}},
}

// favour is how much more often the workload makes a call of kind while
// failpoint is armed.
func favour(failpoint, kind string) float64 {
	for prefix, a := range arming {
		switch {
		case !strings.HasPrefix(failpoint, prefix):
		case slices.Contains(a.pass, kind):
			return 10
		case slices.Contains(a.help, kind):
			return 3
		}
	}
	return 1
}

// workload picks the calls; it counts objects to name them uniquely.
type workload struct {
	rng     *rand.Rand
	image   string
	logRoot string
	gvisor  bool // runsc is installed: some pods are untrusted
	seq     int
}

// next picks a call that the world allows, weighted, favouring the calls
// that pass the armed failpoint (none when it is "").
func (wl *workload) next(w world, failpoint string) op {
	type choice struct {
		weight float64
		make   func() op
	}
	var cs []choice
	add := func(kind string, weight float64, f func() op) {
		cs = append(cs, choice{weight * favour(failpoint, kind), f})
	}
	pick := func(n int) int { return wl.rng.IntN(n) }

	if len(w.pods) < maxPods {
		add(opRunPod, 2, func() op {
			wl.seq++
			return op{kind: opRunPod, pod: wl.podConfig(fmt.Sprintf("w%d", wl.seq), wl.shape(failpoint))}
		})
	}
	var roomy []*runtimeapi.PodSandbox
	for _, p := range w.podsIn(runtimeapi.PodSandboxState_SANDBOX_READY) {
		if len(w.containersOf(p.Id)) < maxPodContainers {
			roomy = append(roomy, p)
		}
	}
	if len(roomy) > 0 {
		add(opCreate, 3, func() op {
			wl.seq++
			name := fmt.Sprintf("sleep%d", wl.seq)
			cmd := []string{"sleep", "3600"}
			if wl.rng.IntN(4) == 0 {
				name, cmd = fmt.Sprintf("quick%d", wl.seq), []string{"sh", "-c", "exit 3"}
			}
			return op{kind: opCreate, podID: roomy[pick(len(roomy))].Id, ctr: wl.containerConfig(name, cmd...)}
		})
	}
	if created := w.containersIn(runtimeapi.ContainerState_CONTAINER_CREATED); len(created) > 0 {
		add(opStart, 4, func() op {
			c := created[pick(len(created))]
			return op{kind: opStart, ctrID: c.Id, ctrName: c.Metadata.Name}
		})
	}
	var running, stopped []*runtimeapi.Container
	for _, c := range w.ctrs {
		if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			running = append(running, c)
		} else {
			stopped = append(stopped, c)
		}
	}
	if len(running) > 0 {
		add(opStop, 2, func() op {
			c := running[pick(len(running))]
			timeout := int64(0)
			if wl.rng.IntN(3) == 0 || failpoint == "container.stop.after-signal" {
				timeout = 1
			}
			return op{kind: opStop, ctrID: c.Id, ctrName: c.Metadata.Name, timeout: timeout}
		})
	}
	if len(w.ctrs) > 0 {
		weight := 0.5 // removing a running container kills it first
		if len(stopped) > 0 {
			weight = 2
		}
		add(opRemove, weight, func() op {
			from := w.ctrs
			if len(stopped) > 0 && wl.rng.IntN(4) != 0 {
				from = stopped
			}
			c := from[pick(len(from))]
			return op{kind: opRemove, ctrID: c.Id, ctrName: c.Metadata.Name}
		})
	}
	if ready := w.podsIn(runtimeapi.PodSandboxState_SANDBOX_READY); len(ready) > 0 {
		add(opStopPod, 1, func() op { return op{kind: opStopPod, podID: ready[pick(len(ready))].Id} })
	}
	if len(w.pods) > 0 {
		weight := 0.5 // kubelet stops a pod first, but need not
		notReady := w.podsIn(runtimeapi.PodSandboxState_SANDBOX_NOTREADY)
		if len(notReady) > 0 {
			weight = 2
		}
		add(opRemovePod, weight, func() op {
			from := w.pods
			if len(notReady) > 0 && wl.rng.IntN(4) != 0 {
				from = notReady
			}
			return op{kind: opRemovePod, podID: from[pick(len(from))].Id}
		})
	}

	total := 0.0
	for _, c := range cs {
		total += c.weight
	}
	x := wl.rng.Float64() * total
	for _, c := range cs {
		if x < c.weight {
			return c.make()
		}
		x -= c.weight
	}
	return cs[len(cs)-1].make() // rounding; there is always a RunPodSandbox or a removal
}

// shape is how a pod is made; each shape takes its own path through
// RunPodSandbox and StopPodSandbox.
type shape struct {
	infra   bool // containers share a PID namespace: an infra process is PID 1
	hostNet bool // no network namespace, no CNI
	gvisor  bool // untrusted: runsc, whose sandbox is an infra container
}

// shape picks a pod shape at random, but one that passes the armed
// failpoint.
func (wl *workload) shape(failpoint string) shape {
	sh := shape{infra: wl.rng.IntN(2) == 0, hostNet: wl.rng.IntN(6) == 0, gvisor: wl.gvisor && wl.rng.IntN(8) == 0}
	switch {
	case strings.HasPrefix(failpoint, "pod.infra."): // only runsc makes an infra container
		sh.gvisor = wl.gvisor
	case failpoint == "pod.run.after-infra":
		sh.infra = true
	}
	if sh.gvisor || strings.Contains(failpoint, "netns") || strings.Contains(failpoint, "cni") {
		sh.hostNet = false // a host-network pod is privileged, and runs on runc
	}
	return sh
}

// podConfig is a workload or keeper pod of the given shape.
func (wl *workload) podConfig(name string, sh shape) *runtimeapi.PodSandboxConfig {
	ns := &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
	if sh.infra {
		ns.Pid = runtimeapi.NamespaceMode_POD
	}
	if sh.hostNet {
		ns.Network = runtimeapi.NamespaceMode_NODE
	}
	role := "work"
	if strings.HasPrefix(name, "keep") {
		role = "keep"
	}
	pc := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "chaos", Uid: "uid-" + name},
		Hostname:     name,
		LogDirectory: filepath.Join(wl.logRoot, name),
		Labels:       map[string]string{"chaos": role},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns}},
	}
	if sh.gvisor {
		pc.Annotations = map[string]string{"io.kubernetes.cri.untrusted-workload": "true"}
	}
	return pc
}

func (wl *workload) containerConfig(name string, cmd ...string) *runtimeapi.ContainerConfig {
	role := "work"
	if strings.HasPrefix(name, "keep") {
		role = "keep"
	}
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: wl.image},
		Command:  cmd,
		LogPath:  name + ".log",
		Labels:   map[string]string{"chaos": role},
	}
}
