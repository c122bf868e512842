//go:build linux

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
)

// BenchmarkListContainerStats (issue 11 item 3): ListContainerStats over
// crispd's CRI socket on a node running 200 containers (20 runc pods x 10
// busybox sleeps, as BenchmarkStartupRestore makes them). Every call must
// return all 200 with cpu and memory. Figures: the p50 and p95 of a call
// ("list-p50-ms", "list-p95-ms"), and the first call ("first-ms"), which
// also measures every writable layer once (later calls get the kept
// figures, refreshed in the background). Alone:
//
//	CGO_ENABLED=1 CRISP_BIN_DIR=bin go test \
//	    -tags containers_image_openpgp,exclude_graphdriver_btrfs \
//	    -run '^$' -bench BenchmarkListContainerStats -benchtime 100x ./test/bench/
func BenchmarkListContainerStats(b *testing.B) {
	harness.RequireRoot(b)
	var dir, runDir string
	b.Cleanup(func() { checkNodeClean(b, dir, runDir) })
	d := harness.Start(b)
	dir, runDir = d.Dir, d.RunDir
	ref := pullBusybox(b, d)
	start := time.Now()
	makeRestorePods(b, d, ref)
	b.Logf("made %d pods x %d running containers in %s", restorePods, restorePerPod, time.Since(start).Round(time.Millisecond))
	b.Cleanup(func() { removeRestorePods(b, d) })

	rt := d.Runtime()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	call := func() time.Duration {
		t := time.Now()
		resp, err := rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
		took := time.Since(t)
		if err != nil {
			b.Fatalf("ListContainerStats() = %v", err)
		}
		measured := 0
		for _, s := range resp.Stats {
			if s.Cpu.GetUsageCoreNanoSeconds().GetValue() > 0 && s.Memory.GetWorkingSetBytes().GetValue() > 0 && s.WritableLayer != nil {
				measured++
			}
		}
		if len(resp.Stats) != restoreContainers || measured != restoreContainers {
			b.Fatalf("ListContainerStats() = %d containers, %d with cpu, memory and writable layer; want %d", len(resp.Stats), measured, restoreContainers)
		}
		return took
	}
	first := call()
	lat := &latencies{name: "list"}
	for b.Loop() {
		lat.add(call())
	}
	lat.report(b)
	b.ReportMetric(msec(first), "first-ms")
}

// BenchmarkListContainerStatsPeer is the same figure from another CRI
// runtime on the same machine, for comparison: the containerd peer of
// /work/shared/conformance/containerd-peer.sh. It runs only when
// CRISP_PEER_ENDPOINT names that runtime's socket (unix path) and
// CRISP_PEER_IMAGE an image it can pull (the peer redirects
// registry.k8s.io/e2e-test-images/busybox:1.29-2 to its loopback
// registry). The pods are made and removed through the same CRI calls.
func BenchmarkListContainerStatsPeer(b *testing.B) {
	harness.RequireRoot(b)
	sock, image := os.Getenv("CRISP_PEER_ENDPOINT"), os.Getenv("CRISP_PEER_IMAGE")
	if sock == "" || image == "" {
		b.Skip("CRISP_PEER_ENDPOINT and CRISP_PEER_IMAGE name the peer runtime and an image it can pull")
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() }) // after the pods' cleanup below
	rt, imgs := runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if _, err := imgs.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}}); err != nil {
		b.Fatalf("pull %s on the peer: %v", image, err)
	}
	var mu sync.Mutex
	var pods []string
	b.Cleanup(func() {
		for _, id := range pods {
			if _, err := rt.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
				b.Errorf("cleanup: StopPodSandbox(%s) on the peer: %v", id, err)
			}
			if _, err := rt.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
				b.Errorf("cleanup: RemovePodSandbox(%s) on the peer: %v", id, err)
			}
		}
	})
	start := time.Now()
	err = inParallel(restorePods, func(i int) error {
		name := fmt.Sprintf("stats-peer-%02d", i)
		pc := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "bench", Uid: "uid-" + name},
			LogDirectory: filepath.Join(os.TempDir(), "crisp-stats-peer", name)}
		pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
		if err != nil {
			return fmt.Errorf("RunPodSandbox(%s): %w", name, err)
		}
		mu.Lock()
		pods = append(pods, pod.PodSandboxId)
		mu.Unlock()
		for j := range restorePerPod {
			cc := &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: fmt.Sprintf("c%d", j)},
				Image: &runtimeapi.ImageSpec{Image: image}, Command: []string{"sleep", "86400"}}
			c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cc, SandboxConfig: pc})
			if err != nil {
				return fmt.Errorf("CreateContainer(%s/c%d): %w", name, j, err)
			}
			if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
				return fmt.Errorf("StartContainer(%s/c%d): %w", name, j, err)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("made %d pods x %d running containers on the peer in %s", restorePods, restorePerPod, time.Since(start).Round(time.Millisecond))
	call := func() time.Duration {
		t := time.Now()
		resp, err := rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
		took := time.Since(t)
		if err != nil {
			b.Fatalf("ListContainerStats() on the peer = %v", err)
		}
		if len(resp.Stats) != restoreContainers {
			b.Fatalf("ListContainerStats() on the peer = %d containers, want %d", len(resp.Stats), restoreContainers)
		}
		return took
	}
	first := call()
	lat := &latencies{name: "list"}
	for b.Loop() {
		lat.add(call())
	}
	lat.report(b)
	b.ReportMetric(msec(first), "first-ms")
}
