package storage

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/crisp-cri/crisp/test/registry"
)

// BenchmarkContainerAtScale measures one container's create (record and
// overlay mount) and remove with 50 and 500 others in the store: what it
// costs beyond that grows with the number of containers.
func BenchmarkContainerAtScale(b *testing.B) {
	reg := registry.Start(b)
	reg.Push(b, "crisp-test/busybox:1.0", busybox(b))
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("%d", n), func(b *testing.B) {
			s := openStore(b, Config{})
			img, err := s.Pull(context.Background(), reg.Ref("crisp-test/busybox:1.0"), nil)
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < n; i++ {
				if _, err := s.CreateContainer(benchID(i), img.ID, Metadata{Kind: "container", SandboxID: "pod", Name: fmt.Sprintf("c%d", i)}); err != nil {
					b.Fatal(err)
				}
			}
			b.Cleanup(func() {
				for i := 0; i < n; i++ {
					s.RemoveContainer(benchID(i))
				}
			})
			var create, remove time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				id := benchID(n + 1 + i)
				start := time.Now()
				if _, err := s.CreateContainer(id, img.ID, Metadata{Kind: "container", SandboxID: "pod", Name: id}); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if err := s.RemoveContainer(id); err != nil {
					b.Fatal(err)
				}
				create += mid.Sub(start)
				remove += time.Since(mid)
			}
			b.ReportMetric(float64(create.Microseconds())/float64(b.N)/1000, "create-ms")
			b.ReportMetric(float64(remove.Microseconds())/float64(b.N)/1000, "remove-ms")
		})
	}
}

func benchID(i int) string { return fmt.Sprintf("%064x", i+1) }

// benchSizes are the store sizes BenchmarkContainerAtScale compares.
var benchSizes = []int{50, 500}
