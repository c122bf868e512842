package kubelet

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/crisp-cri/crisp/test/harness"
)

// peerEndpointEnv names a CRI endpoint to measure instead of a crispd of
// the test, e.g. the containerd peer of
// /work/shared/conformance/containerd-peer.sh:
//
//	CRISP_KUBELET_PEER_ENDPOINT=unix:///tmp/peer/containerd/containerd.sock
//
// Its pods run $CRISP_KUBELET_PEER_IMAGE (default: the critest registry's
// busybox, which that peer pulls from 127.0.0.1:5000).
const (
	peerEndpointEnv  = "CRISP_KUBELET_PEER_ENDPOINT"
	peerImageEnv     = "CRISP_KUBELET_PEER_IMAGE"
	defaultPeerImage = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
)

// BenchmarkKubeletPods measures, per kubelet run, the time from writing each
// runc pod's manifest to kubelet reporting the pod Ready, and kubelet's mean
// PLEG relist duration: over its whole run, and over a 10 s window with
// every pod running. Figures, never pass/fail. Runs against crisp, or
// against $CRISP_KUBELET_PEER_ENDPOINT; compare the two back to back:
//
//	go test -run '^$' -bench KubeletPods -benchtime 3x ./test/kubelet/
//
// Only runc pods: a peer cannot be assumed to run gVisor from the
// annotation (the containerd 1.6 peer has no runsc shim).
func BenchmarkKubeletPods(b *testing.B) {
	harness.RequireRoot(b)
	kubeletBinary(b)
	rt := benchRuntime(b)
	pods := []staticPod{livenessPod, sharedPod}
	ready := map[string]time.Duration{}
	var plegAll, plegSteady time.Duration
	for i := 0; i < b.N; i++ {
		r := startRun(b, rt, nil, pods)
		for name, d := range r.ready {
			ready[name] += d
		}
		all, steady := r.plegFigures()
		plegAll += all
		plegSteady += steady
		r.stop(b)
	}
	for name, d := range ready {
		b.ReportMetric(float64(d.Milliseconds())/float64(b.N), name+"-ready-ms")
	}
	b.ReportMetric(float64(plegAll.Microseconds())/float64(b.N)/1000, "pleg-relist-mean-ms")
	b.ReportMetric(float64(plegSteady.Microseconds())/float64(b.N)/1000, "pleg-relist-steady-mean-ms")
	b.ReportMetric(0, "ns/op") // one op is a whole kubelet run: its time means nothing
}

func benchRuntime(b *testing.B) criRuntime {
	b.Helper()
	endpoint := os.Getenv(peerEndpointEnv)
	if endpoint == "" {
		return crispRuntime(b)
	}
	image := os.Getenv(peerImageEnv)
	if image == "" {
		image = defaultPeerImage
	}
	return peerRuntime(b, endpoint, image)
}

// plegFigures waits 10 s with every pod running and returns kubelet's mean
// PLEG relist duration over its whole run and over those 10 s.
func (r *run) plegFigures() (all, steady time.Duration) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m0, err := r.node.metrics(ctx)
	if err != nil {
		r.t.Fatalf("kubelet /metrics: %v", err)
	}
	time.Sleep(10 * time.Second)
	m1, err := r.node.metrics(ctx)
	if err != nil {
		r.t.Fatalf("kubelet /metrics: %v", err)
	}
	mean := func(sumSeconds, count float64) time.Duration {
		if count == 0 {
			return 0
		}
		return time.Duration(sumSeconds / count * float64(time.Second))
	}
	all = mean(sum(m1, metricPLEGRelistSum, nil), sum(m1, metricPLEGRelistCount, nil))
	dSum := sum(m1, metricPLEGRelistSum, nil) - sum(m0, metricPLEGRelistSum, nil)
	dCount := sum(m1, metricPLEGRelistCount, nil) - sum(m0, metricPLEGRelistCount, nil)
	steady = mean(dSum, dCount)
	r.t.Logf("%s: kubelet PLEG relist mean %v over %v relists; %v over the %v relists of a steady 10 s", r.rt.name,
		all, sum(m1, metricPLEGRelistCount, nil), steady, dCount)
	return all, steady
}
