package db

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCreateContainer measures reserve-name + insert of one container
// row in one transaction, against a sandbox that already holds rows.
func BenchmarkCreateContainer(b *testing.B) {
	s := mustOpen(b)
	sb := mustReadySandbox(b, s, "bench")
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := testContainer(sb.ID, fmt.Sprintf("c%d", i))
		if _, _, err := s.CreateContainer(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateContainerConcurrent is BenchmarkCreateContainer with 20
// writers at once, as 20 pods started together make them; it reports the
// p99 latency of one write, which waits for the others.
func BenchmarkCreateContainerConcurrent(b *testing.B) {
	s := mustOpen(b)
	sb := mustReadySandbox(b, s, "bench")
	ctx := context.Background()
	var n atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(10) // 20 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := testContainer(sb.ID, fmt.Sprintf("c%d", n.Add(1)))
			start := time.Now()
			if _, _, err := s.CreateContainer(ctx, c); err != nil {
				b.Error(err)
				return
			}
			d := time.Since(start)
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}
	})
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkListContainersByLabel is the shape of kubelet's ListContainers
// with a label selector: 1,000 containers in 100 pods, selecting one pod's
// 10 containers by io.kubernetes.pod.uid.
func BenchmarkListContainersByLabel(b *testing.B) {
	s := mustOpen(b)
	ctx := context.Background()
	for p := 0; p < 100; p++ {
		sb := mustReadySandbox(b, s, fmt.Sprintf("pod%d", p))
		for i := 0; i < 10; i++ {
			c := testContainer(sb.ID, fmt.Sprintf("c%d", i))
			c.Labels = StringMap{
				"io.kubernetes.pod.uid":        sb.KubeUID,
				"io.kubernetes.pod.namespace":  "default",
				"io.kubernetes.container.name": fmt.Sprintf("c%d", i),
			}
			if _, _, err := s.CreateContainer(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, bc := range []struct {
		name string
		f    ContainerFilter
		want int
	}{
		{"label", ContainerFilter{Labels: map[string]string{"io.kubernetes.pod.uid": "uid-pod42"}}, 10},
		{"two labels", ContainerFilter{Labels: map[string]string{"io.kubernetes.pod.uid": "uid-pod42", "io.kubernetes.container.name": "c3"}}, 1},
		{"label and state", ContainerFilter{State: ContainerCreating, Labels: map[string]string{"io.kubernetes.pod.uid": "uid-pod42"}}, 10},
		{"all 1000", ContainerFilter{}, 1000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				got, err := s.ListContainers(ctx, bc.f)
				if err != nil || len(got) != bc.want {
					b.Fatalf("ListContainers() = %d rows, %v; want %d", len(got), err, bc.want)
				}
			}
		})
	}
}
