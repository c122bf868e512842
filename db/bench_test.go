package db

import (
	"context"
	"fmt"
	"testing"
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
