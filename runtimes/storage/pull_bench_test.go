package storage

import (
	"bytes"
	"context"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/chrootarchive"

	"github.com/crisp-cri/crisp/runtimes/storage/unpack"
	"github.com/crisp-cri/crisp/test/harness"
	"github.com/crisp-cri/crisp/test/registry"
)

// BenchmarkPullRemove is critest's image benchmark on the store alone:
// pull a one-layer image from a loopback registry, then remove it.
// It reports the pull's p50 (ms) apart from the removal.
func BenchmarkPullRemove(b *testing.B) {
	ctx := context.Background()
	reg := registry.Start(b)
	reg.Push(b, "crisp-bench/busybox:1.0", busybox(b))
	s := openStore(b, Config{})
	ref := reg.Ref("crisp-bench/busybox:1.0")
	var pulls []time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := s.Pull(ctx, ref, nil); err != nil {
			b.Fatal(err)
		}
		pulls = append(pulls, time.Since(start))
		if err := s.Remove(ctx, ref); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(p50(pulls).Microseconds())/1000, "pull-p50-ms")
}

func p50(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkLayerUnpack splits a pull's cost: decompressing the test
// layer, and unpacking its tar the way c/storage's overlay driver does
// (re-executing crispd to untar in a chroot) against in the process.
func BenchmarkLayerUnpack(b *testing.B) {
	harness.RequireRoot(b)
	layers, err := busybox(b).Layers()
	if err != nil {
		b.Fatal(err)
	}
	read := func(open func() (io.ReadCloser, error)) []byte {
		rc, err := open()
		if err != nil {
			b.Fatal(err)
		}
		defer rc.Close()
		data, err := io.ReadAll(rc)
		if err != nil {
			b.Fatal(err)
		}
		return data
	}
	tarball, gz := read(layers[0].Uncompressed), read(layers[0].Compressed)
	untar := func(b *testing.B, unpack func(io.Reader, string, *archive.TarOptions) error) {
		for range b.N {
			dir := b.TempDir()
			if err := unpack(bytes.NewReader(tarball), dir, &archive.TarOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("decompress", func(b *testing.B) {
		for range b.N {
			r, err := archive.DecompressStream(bytes.NewReader(gz))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				b.Fatal(err)
			}
			r.Close()
		}
	})
	b.Run("untar-reexec-chroot", func(b *testing.B) { untar(b, chrootarchive.UntarUncompressed) })
	b.Run("untar-in-process", func(b *testing.B) { untar(b, archive.UntarUncompressed) })
	b.Run("unpack-in-root", func(b *testing.B) { // crisp's direct pull
		untar(b, func(r io.Reader, dir string, _ *archive.TarOptions) error {
			root, err := os.OpenRoot(dir)
			if err != nil {
				return err
			}
			defer root.Close()
			_, err = unpack.Layer(root, r)
			return err
		})
	})
}
