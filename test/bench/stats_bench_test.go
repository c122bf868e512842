//go:build linux

package bench

import (
	"context"
	"testing"
	"time"

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
