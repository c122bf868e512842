// Package kubelet runs the real kubelet (standalone: static pods from a
// manifest dir, no API server, every server on 127.0.0.1) against a real
// crispd, and checks what kubelet sees: pods Running on runc and gVisor,
// probes, logs, /stats/summary, removal. It also measures pod-ready times
// and kubelet's PLEG relist durations, against crisp or another CRI
// runtime (BenchmarkKubeletPods). kubelet is built by `make kubelet`
// (build-kubelet.sh). Nothing imports this package.
package kubelet

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
	"github.com/crisp-cri/crisp/test/images"
	"github.com/crisp-cri/crisp/test/registry"
)

// kubelet's labels on the sandboxes and containers it creates.
const (
	labelPodUID       = "io.kubernetes.pod.uid"
	labelPodName      = "io.kubernetes.pod.name"
	labelPodNamespace = "io.kubernetes.pod.namespace"
)

// criRuntime is the CRI runtime under kubelet: a crispd of the test, or a
// peer runtime for comparison.
type criRuntime struct {
	name     string
	endpoint string
	runtime  runtimeapi.RuntimeServiceClient
	images   runtimeapi.ImageServiceClient
	image    string // what the pods run, pulled before kubelet starts
	gvisor   bool   // the runtime runs the untrusted-annotated pod on gVisor
	// handlers: the runtime reports the handler of each sandbox (crisp
	// does: runc, or runsc for the untrusted pod).
	handlers bool
}

// crispRuntime starts a crispd (with the harness's test network) and a
// loopback registry holding the test busybox.
func crispRuntime(t testing.TB) criRuntime {
	t.Helper()
	d := harness.Start(t)
	reg := registry.Start(t)
	img, err := images.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	reg.Push(t, "crisp-test/busybox:1.0", img)
	return criRuntime{
		name: "crisp", endpoint: "unix://" + d.Socket(),
		runtime: d.Runtime(), images: d.Images(),
		image: reg.Ref("crisp-test/busybox:1.0"), gvisor: true, handlers: true,
	}
}

// peerRuntime dials a CRI runtime that is already running at endpoint,
// whose pods run image (which it can pull).
func peerRuntime(t testing.TB, endpoint, image string) criRuntime {
	t.Helper()
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return criRuntime{
		name: "peer " + endpoint, endpoint: endpoint,
		runtime: runtimeapi.NewRuntimeServiceClient(conn), images: runtimeapi.NewImageServiceClient(conn),
		image: image,
	}
}

// pull pulls the pods' image through the CRI before kubelet starts, so
// ready times measure pod start, not the registry.
func (r criRuntime) pull(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := r.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: r.image}}); err != nil {
		t.Fatalf("%s: pull %s: %v", r.name, r.image, err)
	}
}

// removeKubeletPods stops and removes, through the CRI, every sandbox
// kubelet made on r: what a node does after its kubelet is gone.
func (r criRuntime) removeKubeletPods(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, sb := range r.kubeletSandboxes(t, ctx, nil) {
		if _, err := r.runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			t.Errorf("%s: StopPodSandbox(%s) = %v", r.name, sb.Id, err)
		}
		if _, err := r.runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			t.Errorf("%s: RemovePodSandbox(%s) = %v", r.name, sb.Id, err)
		}
	}
}

// kubeletSandboxes lists the sandboxes of kubelet's node (by its labels),
// narrowed by more labels.
func (r criRuntime) kubeletSandboxes(t testing.TB, ctx context.Context, labels map[string]string) []*runtimeapi.PodSandbox {
	t.Helper()
	resp, err := r.runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{LabelSelector: labels},
	})
	if err != nil {
		t.Fatalf("%s: ListPodSandbox(%v) = %v", r.name, labels, err)
	}
	var mine []*runtimeapi.PodSandbox
	for _, sb := range resp.Items {
		if strings.HasSuffix(sb.Labels[labelPodName], "-"+nodeName) {
			mine = append(mine, sb)
		}
	}
	return mine
}

// run is one kubelet's life on a runtime: its pods, in order, and what was
// measured.
type run struct {
	t     testing.TB
	rt    criRuntime
	node  *node
	pods  []staticPod
	uids  map[string]string        // pod name -> kubelet's uid
	ready map[string]time.Duration // pod name -> manifest written to Ready
}

// startRun starts kubelet on rt with the feature gates and brings up pods
// one after another, each to Ready before the next manifest is written.
// At test end kubelet is killed, then its pods removed through the CRI,
// then its cgroups (see stop).
func startRun(t testing.TB, rt criRuntime, gates map[string]bool, pods []staticPod) *run {
	t.Helper()
	rt.pull(t)
	r := &run{t: t, rt: rt, pods: pods, uids: map[string]string{}, ready: map[string]time.Duration{}}
	r.node = startNode(t, nodeOptions{endpoint: rt.endpoint, featureGates: gates, cleanupPods: func() { rt.removeKubeletPods(t) }})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, p := range pods {
		written := p.write(r.node, rt.image)
		pod, took := r.node.waitReady(ctx, p, written)
		r.uids[p.name] = pod.Metadata.UID
		r.ready[p.name] = took
		slog.Info("pod ready", "runtime", rt.name, "pod", p.name, "ready_ms", took.Milliseconds())
		t.Logf("%s: pod %s Ready %v after its manifest was written", rt.name, p.name, took.Round(time.Millisecond))
	}
	return r
}

func TestKubeletStaticPods(t *testing.T) {
	harness.RequireRoot(t)
	kubeletBinary(t)
	harness.RequireTool(t, "runsc")
	tests := []struct {
		name  string
		gates map[string]bool
		check func(t *testing.T, r *run)
	}{
		{name: "generic PLEG"},
		// kubelet's evented PLEG reads crisp's GetContainerEvents stream.
		{name: "evented PLEG", gates: map[string]bool{"EventedPLEG": true}, check: checkEventsReceived},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := crispRuntime(t)
			r := startRun(t, rt, tt.gates, []staticPod{livenessPod, sharedPod, gvisorPod})
			r.checkRuntimeView(t)
			r.checkLivenessProbed(t)
			r.checkLogs(t)
			r.checkSummary(t)
			if tt.check != nil {
				tt.check(t, r)
			}
			r.plegFigures() // logged: a measurement, not an assertion
			r.checkManifestRemoval(t, livenessPod)
			r.stop(t)
		})
	}
}

// checkRuntimeView checks the pods as the runtime sees them over the CRI:
// one ready sandbox per pod, on the handler the pod asked for, its app
// containers running and its init containers exited 0.
func (r *run) checkRuntimeView(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, p := range r.pods {
		sbs := r.rt.kubeletSandboxes(t, ctx, map[string]string{labelPodUID: r.uids[p.name]})
		ready := slices.DeleteFunc(sbs, func(sb *runtimeapi.PodSandbox) bool { return sb.State != runtimeapi.PodSandboxState_SANDBOX_READY })
		if len(ready) != 1 {
			t.Errorf("%s: pod %s has %d ready sandboxes, want 1", r.rt.name, p.name, len(ready))
			continue
		}
		sb := ready[0]
		if sb.Labels[labelPodNamespace] != "default" {
			t.Errorf("pod %s sandbox labels = %v, want kubelet's namespace label", p.name, sb.Labels)
		}
		if r.rt.handlers {
			want := "runc"
			if p.gvisor {
				want = "runsc"
			}
			if sb.RuntimeHandler != want {
				t.Errorf("pod %s runs on handler %q, want %q", p.name, sb.RuntimeHandler, want)
			}
		}
		r.checkContainers(t, ctx, p, sb.Id)
	}
}

func (r *run) checkContainers(t *testing.T, ctx context.Context, p staticPod, sandboxID string) {
	t.Helper()
	resp, err := r.rt.runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: sandboxID}})
	if err != nil {
		t.Fatalf("ListContainers(pod %s) = %v", p.name, err)
	}
	byName := map[string]*runtimeapi.Container{}
	for _, c := range resp.Containers {
		byName[c.Metadata.Name] = c
	}
	for _, name := range p.running {
		if c := byName[name]; c == nil || c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("%s: pod %s container %s = %v, want running", r.rt.name, p.name, name, c)
		}
	}
	for _, name := range p.inits {
		c := byName[name]
		if c == nil {
			t.Errorf("%s: pod %s has no init container %s", r.rt.name, p.name, name)
			continue
		}
		st, err := r.rt.runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.Id})
		if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.Status.ExitCode != 0 {
			t.Errorf("%s: pod %s init container %s = %v, %v; want exited 0", r.rt.name, p.name, name, st.GetStatus(), err)
		}
	}
}

// checkLivenessProbed waits until kubelet counts two successful liveness
// probes of each probed container, and fails on any failed one.
func (r *run) checkLivenessProbed(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, p := range r.pods {
		if p.liveness == "" {
			continue
		}
		match := map[string]string{"probe_type": "Liveness", "pod": p.fullName(), "container": p.liveness}
		var ok, failed float64
		for ctx.Err() == nil {
			m, err := r.node.probeMetrics(ctx)
			if err != nil {
				t.Fatalf("kubelet /metrics/probes: %v", err)
			}
			ok = sum(m, metricProbes, withLabel(match, "result", "successful"))
			failed = sum(m, metricProbes, withLabel(match, "result", "failed"))
			if ok >= 2 || failed > 0 {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if ok < 2 || failed > 0 {
			t.Errorf("pod %s liveness probes of %s: %v successful, %v failed; want >= 2 successful, none failed", p.name, p.liveness, ok, failed)
		}
		t.Logf("pod %s: %v successful liveness probes", p.name, ok)
	}
}

func withLabel(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for mk, mv := range m {
		out[mk] = mv
	}
	return out
}

// checkLogs waits until every container's log, in kubelet's pod log dir,
// holds the line it must write.
func (r *run) checkLogs(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for _, p := range r.pods {
		for container, line := range p.logs {
			// <pod logs>/<namespace>_<pod>_<uid>/<container>/<restart count>.log
			path := filepath.Join(r.node.podLogs, "default_"+p.fullName()+"_"+r.uids[p.name], container, "0.log")
			var body []byte
			for {
				body, _ = os.ReadFile(path)
				if strings.Contains(string(body), " "+line+"\n") || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if !strings.Contains(string(body), " "+line+"\n") {
				t.Errorf("%s: log %s = %q, want a line %q", r.rt.name, path, body, line)
			}
		}
	}
}

// checkSummary waits for kubelet's /stats/summary to be complete for every
// pod, and fails naming every figure still missing.
func (r *run) checkSummary(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var gaps []string
	var lastErr error
	for ctx.Err() == nil {
		var s summary
		lastErr = r.node.getJSON(ctx, "/stats/summary", &s)
		if lastErr == nil {
			gaps = summaryGaps(s, r.pods)
			if len(gaps) == 0 {
				return
			}
		}
		time.Sleep(2 * time.Second)
	}
	if lastErr != nil {
		t.Errorf("%s: kubelet /stats/summary: %v", r.rt.name, lastErr)
	}
	t.Errorf("%s: kubelet /stats/summary is missing %d figures:\n  %s", r.rt.name, len(gaps), strings.Join(gaps, "\n  "))
}

// checkEventsReceived checks that kubelet's evented PLEG received
// container events from the runtime (its latency histogram counts one
// observation per event).
func checkEventsReceived(t *testing.T, r *run) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var m []sample
	for ctx.Err() == nil {
		var err error
		m, err = r.node.metrics(ctx)
		if err != nil {
			t.Fatalf("kubelet /metrics: %v", err)
		}
		if sum(m, metricEventedEvents, nil) > 0 {
			break
		}
		time.Sleep(time.Second)
	}
	events, conns, connErrs := sum(m, metricEventedEvents, nil), sum(m, metricEventedConnected, nil), sum(m, metricEventedConnErrors, nil)
	t.Logf("evented PLEG: %v events received, %v streams opened, %v stream errors", events, conns, connErrs)
	if events == 0 {
		t.Errorf("kubelet's evented PLEG received no container events (%s = 0; %v streams opened, %v stream errors): GetContainerEvents does not deliver", metricEventedEvents, conns, connErrs)
	}
}

// checkManifestRemoval removes p's manifest and waits until kubelet has
// dropped the pod, the runtime has neither sandbox nor container of it,
// and kubelet has removed its pod cgroup.
func (r *run) checkManifestRemoval(t *testing.T, p staticPod) {
	t.Helper()
	uid := r.uids[p.name]
	removed := time.Now()
	if err := os.Remove(r.node.manifestPath(p)); err != nil {
		t.Fatal(err)
	}
	// kubelet stops the pod at once; its container GC removes what is
	// left about once a minute.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var left []string
	for ctx.Err() == nil {
		left = r.leftoversOf(t, ctx, p, uid)
		if len(left) == 0 {
			t.Logf("%s: pod %s gone from kubelet, runtime and cgroups %v after its manifest was removed", r.rt.name, p.name, time.Since(removed).Round(time.Millisecond))
			return
		}
		r.node.alive()
		time.Sleep(500 * time.Millisecond)
	}
	t.Errorf("%s: pod %s not removed 4m after its manifest: %s", r.rt.name, p.name, strings.Join(left, "; "))
}

// leftoversOf describes what is left of a pod: in kubelet, in the runtime,
// in the cgroups.
func (r *run) leftoversOf(t *testing.T, ctx context.Context, p staticPod, uid string) []string {
	t.Helper()
	var left []string
	pods, err := r.node.pods(ctx)
	if err != nil {
		return []string{err.Error()}
	}
	if pod, ok := pods[p.fullName()]; ok {
		left = append(left, "kubelet still has it: "+pod.describe())
	}
	for _, sb := range r.rt.kubeletSandboxes(t, ctx, map[string]string{labelPodUID: uid}) {
		left = append(left, "sandbox "+sb.Id+" "+sb.State.String())
	}
	cs, err := r.rt.runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{LabelSelector: map[string]string{labelPodUID: uid}},
	})
	if err != nil {
		t.Fatalf("ListContainers(uid %s) = %v", uid, err)
	}
	for _, c := range cs.Containers {
		left = append(left, "container "+c.Metadata.Name+" "+c.State.String())
	}
	if slices.Contains(r.node.podCgroups(), "pod"+uid) {
		left = append(left, "pod cgroup pod"+uid)
	}
	return left
}

// stop kills kubelet, removes the pods it left through the CRI and checks
// that nothing of them is left: no sandbox, no process in kubelet's
// cgroups (which are removed).
func (r *run) stop(t testing.TB) {
	t.Helper()
	r.node.stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if left := r.rt.kubeletSandboxes(t, ctx, nil); len(left) != 0 {
		t.Errorf("%s: %d sandboxes left after kubelet's pods were removed", r.rt.name, len(left))
	}
	for _, h := range cgroupHierarchies(t, true) {
		if _, err := os.Stat(filepath.Join(h, r.node.cgroupRoot)); err == nil {
			t.Errorf("kubelet's cgroup root left in %s", h)
		}
	}
}
