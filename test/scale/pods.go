package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Labels of every pod and container made; the namespace label is the one
// kubelet sets on containers.
const (
	labelSet       = "crisp-scale/set" // populate or burst
	labelTier      = "tier"            // hot or cold
	labelNamespace = "io.kubernetes.pod.namespace"
	labelPodName   = "io.kubernetes.pod.name"
	labelCtrName   = "io.kubernetes.container.name"
	setPopulate    = "populate"
	setBurst       = "burst"
)

// hotCount is how many of n pods are labelled tier=hot for a fraction hot.
func hotCount(n int, hot float64) int {
	c := 0
	for i := range n {
		if isHot(i, hot) {
			c++
		}
	}
	return c
}

// isHot spreads the hot pods evenly: pod i is hot when the running count
// floor((i+1)*hot) steps up at i.
func isHot(i int, hot float64) bool {
	const eps = 1e-9 // 0.2*5 is 1 - 1e-16 in floats
	return int(float64(i+1)*hot+eps) > int(float64(i)*hot+eps)
}

// podSpec names one pod to make.
type podSpec struct {
	name string
	set  string
	tier string
	ctrs int
}

func (b *bench) podConfig(p podSpec) *runtimeapi.PodSandboxConfig {
	ns := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD,
		Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD}
	var parent string
	if b.cfg.cgroupRoot != "" {
		parent = path.Join(b.cfg.cgroupRoot, p.name)
	}
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: p.name, Namespace: b.cfg.namespace,
			Uid: b.cfg.namespace + "-" + p.name, Attempt: 0},
		Hostname:     p.name,
		LogDirectory: filepath.Join(b.logDir, p.name),
		Labels: map[string]string{labelSet: p.set, labelTier: p.tier,
			labelNamespace: b.cfg.namespace, labelPodName: p.name},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    parent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns},
		},
	}
}

func (b *bench) containerConfig(p podSpec, j int) *runtimeapi.ContainerConfig {
	name := fmt.Sprintf("c%d", j)
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: b.cfg.image, UserSpecifiedImage: b.cfg.image},
		Command:  []string{"sleep", "3600"},
		LogPath:  name + ".log",
		Labels: map[string]string{labelSet: p.set, labelTier: p.tier, labelNamespace: b.cfg.namespace,
			labelPodName: p.name, labelCtrName: name},
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD,
				Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD}}},
	}
}

// startPod runs the pod and creates and starts its containers, recording
// each RPC under prefix+its name. It returns the pod's ID, also on error
// once the pod exists, so the caller can remove it.
func (b *bench) startPod(ctx context.Context, p podSpec, prefix string) (string, error) {
	cfg := b.podConfig(p)
	if err := os.MkdirAll(cfg.LogDirectory, 0o755); err != nil {
		return "", err
	}
	var id string
	err := b.timed(ctx, prefix+"RunPodSandbox", runPodTimeout, func(ctx context.Context) error {
		r, err := b.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: b.cfg.runtimeHandler})
		if err == nil {
			id = r.PodSandboxId
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("pod %s: %w", p.name, err)
	}
	for j := range p.ctrs {
		var cid string
		err := b.timed(ctx, prefix+"CreateContainer", rpcTimeout, func(ctx context.Context) error {
			r, err := b.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: id,
				Config: b.containerConfig(p, j), SandboxConfig: cfg})
			if err == nil {
				cid = r.ContainerId
			}
			return err
		})
		if err != nil {
			return id, fmt.Errorf("pod %s: %w", p.name, err)
		}
		err = b.timed(ctx, prefix+"StartContainer", rpcTimeout, func(ctx context.Context) error {
			_, err := b.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cid})
			return err
		})
		if err != nil {
			return id, fmt.Errorf("pod %s: %w", p.name, err)
		}
	}
	return id, nil
}

// populate makes -pods pods of -containers running containers with
// -workers workers, one pod per job.
func (b *bench) populate(ctx context.Context) error {
	b.podIDs = make([]string, b.cfg.pods)
	start := time.Now()
	err := parallel(ctx, b.cfg.workers, b.cfg.pods, func(ctx context.Context, i int) error {
		tier := "cold"
		if isHot(i, b.cfg.hot) {
			tier = "hot"
		}
		id, err := b.startPod(ctx, podSpec{name: fmt.Sprintf("scale-%d", i), set: setPopulate, tier: tier,
			ctrs: b.cfg.containers}, "")
		b.podIDs[i] = id
		return err
	})
	b.rep.wall(fmt.Sprintf("populate %dx%d, %d workers", b.cfg.pods, b.cfg.containers, b.cfg.workers), time.Since(start))
	return err
}

// runBurst starts -burst pods of one container at once, one goroutine per
// pod, reports the wall time until the last one runs, and removes them.
func (b *bench) runBurst(ctx context.Context, node string) error {
	ids := make([]string, b.cfg.burst)
	errs := make([]error, b.cfg.burst)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range b.cfg.burst {
		wg.Go(func() {
			ids[i], errs[i] = b.startPod(ctx, podSpec{name: fmt.Sprintf("burst-%s-%d", node, i), set: setBurst,
				tier: "cold", ctrs: 1}, "burst "+node+": ")
		})
	}
	wg.Wait()
	b.rep.wall(fmt.Sprintf("burst %d pods x 1 at once, %s node", b.cfg.burst, node), time.Since(start))
	err := errors.Join(errs...)
	// Remove them untimed, whatever happened.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	rmErr := parallel(cctx, b.cfg.workers, len(ids), func(ctx context.Context, i int) error {
		if ids[i] == "" {
			return nil
		}
		return b.removePod(ctx, ids[i], false)
	})
	return errors.Join(err, rmErr)
}

// removePod stops and removes one pod, timing both when timed.
func (b *bench) removePod(ctx context.Context, id string, timed bool) error {
	call := func(name string, f func(ctx context.Context) error) error {
		if timed {
			return b.timed(ctx, name, rpcTimeout, f)
		}
		ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		defer cancel()
		if err := f(ctx); err != nil {
			return fmt.Errorf("%s %s: %w", name, id, err)
		}
		return nil
	}
	if err := call("StopPodSandbox", func(ctx context.Context) error {
		_, err := b.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
		return err
	}); err != nil {
		return err
	}
	return call("RemovePodSandbox", func(ctx context.Context) error {
		_, err := b.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
		return err
	})
}

// ourPods lists the IDs of every pod of our namespace.
func (b *bench) ourPods(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	r, err := b.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	var ids []string
	for _, p := range r.Items {
		if p.GetMetadata().GetNamespace() == b.cfg.namespace {
			ids = append(ids, p.Id)
		}
	}
	return ids, nil
}

// removePods stops and removes every pod of our namespace with -workers
// workers, trying every pod even after a failure.
func (b *bench) removePods(ctx context.Context, timed bool) error {
	ids, err := b.ourPods(ctx)
	if err != nil {
		return err
	}
	errs := make([]error, len(ids))
	err = parallel(ctx, b.cfg.workers, len(ids), func(ctx context.Context, i int) error {
		errs[i] = b.removePod(ctx, ids[i], timed)
		return nil
	})
	return errors.Join(append(errs, err)...)
}

// cleanup removes every pod, timed, and checks that nothing is left.
func (b *bench) cleanup(ctx context.Context) error {
	start := time.Now()
	err := b.removePods(ctx, true)
	b.rep.wall(fmt.Sprintf("cleanup, %d workers", b.cfg.workers), time.Since(start))
	if err != nil {
		return err
	}
	if err := b.countLeftovers(ctx); err != nil {
		return err
	}
	return b.removeCgroups()
}

// countLeftovers records how many pods of our namespace, and containers
// labelled with it, the runtime still lists.
func (b *bench) countLeftovers(ctx context.Context) error {
	pods, err := b.ourPods(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	r, err := b.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		LabelSelector: map[string]string{labelNamespace: b.cfg.namespace}}})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	b.rep.Leftovers = len(pods) + len(r.Containers)
	return nil
}

// removeCgroups removes the pods' cgroup parents, which the runtime
// created (runc makes missing parents) but, as they are kubelet's, does
// not remove: every empty directory under -cgroup-root, in the v2 tree and
// in each v1 hierarchy, deepest first. A directory that is not empty
// stays, and is reported.
func (b *bench) removeCgroups() error {
	if b.cfg.cgroupRoot == "" {
		return nil
	}
	roots := []string{filepath.Join("/sys/fs/cgroup", b.cfg.cgroupRoot)}
	if v1, err := filepath.Glob("/sys/fs/cgroup/*" + path.Clean(b.cfg.cgroupRoot)); err == nil {
		roots = append(roots, v1...)
	}
	var left []string
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.Reverse(dirs) // children after their parent in walk order
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				left = append(left, d)
			}
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("cgroups left: %s", strings.Join(left, " "))
	}
	return nil
}

// runningOf counts the containers of set and namespace ns that run.
func runningOf(ctrs []*runtimeapi.Container, ns, set string) int {
	n := 0
	for _, c := range ctrs {
		if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING &&
			c.Labels[labelNamespace] == ns && c.Labels[labelSet] == set {
			n++
		}
	}
	return n
}
