//go:build linux

package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/runtimes/layout"
	"github.com/crisp-cri/crisp/runtimes/oci"
	"github.com/crisp-cri/crisp/test/harness"
	"github.com/crisp-cri/crisp/test/images"
	"github.com/crisp-cri/crisp/test/registry"
)

// latencies collects per-iteration durations and reports their p50 and
// p95 in milliseconds under name.
type latencies struct {
	name string
	ds   []time.Duration
}

func (l *latencies) add(d time.Duration) { l.ds = append(l.ds, d) }

func (l *latencies) report(b *testing.B) {
	if len(l.ds) == 0 {
		return
	}
	sort.Slice(l.ds, func(i, j int) bool { return l.ds[i] < l.ds[j] })
	pct := func(p float64) float64 {
		return float64(l.ds[int(p*float64(len(l.ds)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), l.name+"-p50-ms")
	b.ReportMetric(pct(0.95), l.name+"-p95-ms")
}

// BenchmarkPodCycleCrisp: RunPodSandbox + CreateContainer + StartContainer
// ("up") and StopContainer + RemoveContainer + StopPodSandbox +
// RemovePodSandbox ("down") through crispd's CRI socket, on runc and on
// runsc (a pod annotated untrusted). Run with -benchtime 50x for the 50
// iterations of the issue. The runsc cases compare gVisor's platforms on
// the pinned runsc (systrap, crisp's default, and ptrace) and the pinned
// runsc with Debian's runsc 0.0~20221219 (ptrace, the only platform it
// has that works here), where installed.
func BenchmarkPodCycleCrisp(b *testing.B) {
	untrusted := map[string]string{"io.kubernetes.cri.untrusted-workload": "true"}
	b.Run("runc", func(b *testing.B) { podCycle(b, nil) })
	b.Run("runsc", func(b *testing.B) {
		harness.RequireTool(b, "runsc")
		podCycle(b, untrusted)
	})
	b.Run("runsc-ptrace", func(b *testing.B) {
		harness.RequireTool(b, "runsc")
		podCycle(b, untrusted, harness.WithTOML("[runtimes.runsc]\nplatform = \"ptrace\"\n"))
	})
	b.Run("runsc-debian", func(b *testing.B) {
		if _, err := os.Stat(debianRunsc); err != nil {
			b.Skipf("SKIPPED: Debian's runsc is not installed at %s: %v", debianRunsc, err)
		}
		podCycle(b, untrusted, harness.WithTOML(fmt.Sprintf("[runtimes.runsc]\npath = %q\nplatform = \"ptrace\"\n", debianRunsc)))
	})
}

// debianRunsc is the runsc of Debian's package, which `make deps`
// installs beside the pinned one.
const debianRunsc = "/usr/bin/runsc"

func podCycle(b *testing.B, annotations map[string]string, opts ...harness.Option) {
	harness.RequireRoot(b)
	d := harness.Start(b, opts...)
	reg := registry.Start(b)
	img, err := images.Busybox()
	if err != nil {
		b.Fatal(err)
	}
	reg.Push(b, "bench/busybox:1.0", img)
	ref := reg.Ref("bench/busybox:1.0")
	ctx := context.Background()
	rt := d.Runtime()
	if _, err := d.Images().PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		b.Fatal(err)
	}
	up, down := &latencies{name: "up"}, &latencies{name: "down"}
	i := 0
	for b.Loop() {
		i++
		name := fmt.Sprintf("bench-%d", i)
		pc := &runtimeapi.PodSandboxConfig{
			Metadata:    &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "bench", Uid: "uid-" + name},
			Annotations: annotations,
			Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}},
		}
		start := time.Now()
		pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
		if err != nil {
			b.Fatal(err)
		}
		c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: ref}, Command: []string{"sleep", "600"}}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			b.Fatal(err)
		}
		up.add(time.Since(start))
		start = time.Now()
		steps := []error{
			func() error {
				_, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c.ContainerId})
				return err
			}(),
			func() error {
				_, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.ContainerId})
				return err
			}(),
			func() error {
				_, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
				return err
			}(),
			func() error {
				_, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
				return err
			}(),
		}
		for _, err := range steps {
			if err != nil {
				b.Fatal(err)
			}
		}
		down.add(time.Since(start))
	}
	up.report(b)
	down.report(b)
}

// BenchmarkRawConmonRunc is the floor under crisp's container start: conmon
// + runc create and start of a busybox bundle, then kill and delete, with
// no pod, network, storage or database.
func BenchmarkRawConmonRunc(b *testing.B) {
	harness.RequireRoot(b)
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		b.Fatal(err)
	}
	dir, err := os.MkdirTemp("/run", "crisp-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	rootfs := filepath.Join(dir, "rootfs")
	os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), busybox, 0o755)
	os.Symlink("busybox", filepath.Join(rootfs, "bin", "sleep"))
	files := layout.New(dir)
	rt := oci.New(oci.Handler{Name: "runc", Path: "/usr/sbin/runc", Root: filepath.Join(dir, "runc"), Type: "runc"},
		"/usr/bin/conmon", files, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	up, down := &latencies{name: "up"}, &latencies{name: "down"}
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("%064x", i)
		ctr := files.Container(id)
		os.MkdirAll(ctr.Bundle, 0o755)
		writeSpec(b, ctr, rootfs)
		start := time.Now()
		if _, err := rt.Create(ctx, oci.CreateOpts{ID: id, LogPath: filepath.Join(ctr.Bundle, "log")}); err != nil {
			b.Fatal(err)
		}
		if err := rt.Start(ctx, id); err != nil {
			b.Fatal(err)
		}
		up.add(time.Since(start))
		start = time.Now()
		if err := rt.Kill(ctx, id, syscall.SIGKILL, true); err != nil {
			b.Fatal(err)
		}
		for {
			if _, _, ok, _ := oci.ReadExit(ctr); ok {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if err := rt.Delete(ctx, id, true); err != nil {
			b.Fatal(err)
		}
		down.add(time.Since(start))
	}
	up.report(b)
	down.report(b)
}

// writeSpec writes a minimal OCI spec running sleep from rootfs into the
// container's bundle.
func writeSpec(b *testing.B, ctr layout.Container, rootfs string) {
	b.Helper()
	spec := specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: []string{"/bin/sleep", "600"}, Cwd: "/", Env: []string{"PATH=/bin"}},
		Root:    &specs.Root{Path: rootfs, Readonly: true},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.NetworkNamespace}},
		},
	}
	if err := ctr.WriteSpec(&spec); err != nil {
		b.Fatal(err)
	}
}
