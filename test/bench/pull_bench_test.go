//go:build linux

// Package bench measures crisp against the tools operators compare it with.
//
// The pull benchmarks time pull + unpack of a ~5 MiB (compressed) image from
// an in-process registry on 127.0.0.1 into go.podman.io/storage with the
// overlay driver: crisp (CRI PullImage against a real crispd) versus
// `skopeo copy` into a containers-storage store of the same driver. Every
// iteration starts from a store without the image, so each one downloads and
// unpacks every layer; the registry's blob counter checks that. Numbers are
// reported (ns/op, MB/s of compressed image), never asserted.
//
// They need root and skopeo. `make bench` runs, from the module root:
//
//	CGO_ENABLED=1 CRISP_BIN_DIR=bin go test \
//	    -tags containers_image_openpgp,exclude_graphdriver_btrfs \
//	    -run '^$' -bench . -benchtime 20x ./test/bench/
//
// Without CRISP_BIN_DIR the harness builds crispd from the working tree.
package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
	"github.com/crisp-cri/crisp/test/images"
	"github.com/crisp-cri/crisp/test/registry"
)

// imageSize is the target compressed size of the benchmark image.
const imageSize = 5 << 20

// fixture is the benchmark image, pushed to its own registry.
type fixture struct {
	reg    *registry.Registry
	ref    string // 127.0.0.1:PORT/bench/payload:1.0
	bytes  int64  // compressed: config plus layer blobs
	layers int
}

// pushImage starts a registry and pushes busybox plus an incompressible
// payload layer sized so that the compressed image is ~imageSize.
func pushImage(b *testing.B) fixture {
	b.Helper()
	base, err := images.Busybox()
	if err != nil {
		b.Fatal(err)
	}
	img, err := images.WithPayload(base, imageSize-blobBytes(b, base), 1)
	if err != nil {
		b.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		b.Fatal(err)
	}
	f := fixture{reg: registry.Start(b), bytes: blobBytes(b, img), layers: len(m.Layers)}
	f.reg.Push(b, "bench/payload:1.0", img)
	f.reg.ResetCounts()
	f.ref = f.reg.Ref("bench/payload:1.0")
	b.Logf("image %s: %d layers, %d bytes compressed (%.2f MB)", f.ref, f.layers, f.bytes, float64(f.bytes)/1e6)
	// The MB/s column: compressed image bytes per second of pull + unpack.
	b.SetBytes(f.bytes)
	return f
}

// blobBytes is what a pull downloads besides the manifest: config + layers.
func blobBytes(b *testing.B, img v1.Image) int64 {
	b.Helper()
	m, err := img.Manifest()
	if err != nil {
		b.Fatal(err)
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

// checkDownloaded fails b unless the last pull fetched every layer: a pull
// that reused layers left behind would measure nothing.
func (f fixture) checkDownloaded(b *testing.B) {
	b.Helper()
	if got := f.reg.TotalBlobGets(); got < f.layers {
		b.Fatalf("pull fetched %d blobs, want at least the %d layers: the previous image was not removed", got, f.layers)
	}
	f.reg.ResetCounts()
}

func BenchmarkPullCrisp(b *testing.B) {
	harness.RequireRoot(b)
	f := pushImage(b)
	// Registered before the daemon's own cleanup, so it runs after crispd
	// has stopped: a clean stop must leave no mount behind.
	var dir string
	b.Cleanup(func() {
		if m := unmountUnder(b, dir); len(m) > 0 {
			b.Errorf("crispd left mounts behind: %v", m)
		}
	})
	d := harness.Start(b)
	dir = d.Dir
	imgs := d.Images()
	ctx := context.Background()
	pull := func() string {
		resp, err := imgs.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: f.ref}})
		if err != nil || resp.GetImageRef() == "" {
			b.Fatalf("PullImage(%s) = %v, %v", f.ref, resp, err)
		}
		return resp.ImageRef
	}
	// Removing the image removes its layers, so the next pull downloads
	// and unpacks everything again.
	remove := func(ref string) {
		f.checkDownloaded(b)
		if _, err := imgs.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
			b.Fatalf("RemoveImage(%s): %v", ref, err)
		}
	}
	remove(pull()) // warm-up, untimed: both sides start warm
	for b.Loop() {
		ref := pull()
		b.StopTimer()
		remove(ref)
		b.StartTimer()
	}
}

// BenchmarkPullSkopeo keeps one store, as crispd does, and deletes the
// image (and so its layers) between iterations: both sides measure the same
// pull + unpack. Skopeo's time also holds its process start and the opening
// of the store (graph driver init) that crispd does once at start-up; that
// is the real cost of the CLI. Skopeo leaves <graph>/overlay bind-mounted
// onto itself on exit; tempStore's cleanup unmounts it.
func BenchmarkPullSkopeo(b *testing.B) {
	skopeo := harness.RequireTool(b, "skopeo")
	harness.RequireRoot(b)
	f := pushImage(b)
	dest := storeSpec(tempStore(b)) + f.ref
	copyImage := func() { run(b, skopeo, "copy", "--quiet", "--src-tls-verify=false", "docker://"+f.ref, dest) }
	// Deleting an image from containers-storage deletes its unused layers.
	remove := func() { f.checkDownloaded(b); run(b, skopeo, "delete", dest) }
	copyImage() // warm-up, untimed: creates the store and its layout
	remove()
	for b.Loop() {
		copyImage()
		b.StopTimer()
		remove()
		b.StartTimer()
	}
}

// BenchmarkPullSkopeoFreshStore copies into a new, empty store each
// iteration, as a one-off `skopeo copy` on a clean machine would: its time
// also holds creating the store's directories and layout and the overlay
// driver's first-use feature checks (those mount and unmount test dirs).
func BenchmarkPullSkopeoFreshStore(b *testing.B) {
	skopeo := harness.RequireTool(b, "skopeo")
	harness.RequireRoot(b)
	f := pushImage(b)
	root := tempStore(b)
	for i := 0; b.Loop(); i++ {
		dir := filepath.Join(root, fmt.Sprint(i))
		dest := storeSpec(dir) + f.ref
		run(b, skopeo, "copy", "--quiet", "--src-tls-verify=false", "docker://"+f.ref, dest)
		b.StopTimer()
		f.checkDownloaded(b)
		unmountUnder(b, dir)
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// tempStore returns a temp dir for containers-storage stores whose mounts
// are undone at the end, before the dir is removed: c/storage bind-mounts
// <graph>/overlay onto itself and skopeo (1.9) leaves that behind.
func tempStore(b *testing.B) string {
	dir := b.TempDir()
	b.Cleanup(func() { unmountUnder(b, dir) })
	return dir
}

// storeSpec is the containers-storage transport prefix of an overlay store
// in dir, the driver crispd uses by default.
func storeSpec(dir string) string {
	return "containers-storage:[overlay@" + filepath.Join(dir, "graph") + "+" + filepath.Join(dir, "run") + "]"
}

// run runs a command and fails b with its output if it fails.
func run(b *testing.B, name string, args ...string) {
	b.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// unmountUnder unmounts every mount point below dir, deepest first, and
// returns them. Failing to unmount one fails b: the temp dir would stay.
func unmountUnder(b *testing.B, dir string) []string {
	b.Helper()
	ms := mountsUnder(b, dir)
	slices.Sort(ms)
	for _, m := range slices.Backward(ms) {
		if err := syscall.Unmount(m, 0); err != nil {
			b.Errorf("unmount %s: %v", m, err)
		}
	}
	return ms
}

// mountsUnder lists the mount points below dir ("" gives none, never "/").
func mountsUnder(b *testing.B, dir string) []string {
	b.Helper()
	if dir == "" {
		return nil
	}
	out, err := exec.Command("findmnt", "-rn", "-o", "TARGET").Output()
	if err != nil {
		b.Fatalf("findmnt: %v", err)
	}
	var ms []string
	for _, m := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(m, dir+"/") || m == dir {
			ms = append(ms, m)
		}
	}
	return ms
}
