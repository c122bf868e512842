package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
	"github.com/crisp-cri/crisp/test/images"
	"github.com/crisp-cri/crisp/test/registry"
)

// startKeepers runs the pods that no workload call touches: one without
// and one with an infra process, each with a sleeper. Every kill must leave
// them running.
func (c *chaos) startKeepers() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, infra := range []bool{false, true} {
		name := fmt.Sprintf("keep%d", i)
		pc := c.wl.podConfig(name, shape{infra: infra})
		pod, err := c.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
		if err != nil {
			c.t.Fatalf("RunPodSandbox(%s) = %v", name, err)
		}
		ct, err := c.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId,
			Config: c.wl.containerConfig(name, "sleep", "3600"), SandboxConfig: pc})
		if err != nil {
			c.t.Fatalf("CreateContainer(%s) = %v", name, err)
		}
		if _, err := c.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ct.ContainerId}); err != nil {
			c.t.Fatalf("StartContainer(%s) = %v", name, err)
		}
	}
}

func dial(t *testing.T, d *harness.Daemon) (*grpc.ClientConn, runtimeapi.RuntimeServiceClient) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+d.Socket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return conn, runtimeapi.NewRuntimeServiceClient(conn)
}

// pullBusybox serves the test busybox from a registry of the test's own
// and pulls it; it returns the reference.
func pullBusybox(t *testing.T, d *harness.Daemon) string {
	t.Helper()
	img, err := images.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.Start(t)
	reg.Push(t, "crisp-test/busybox:1.0", img)
	ref := reg.Ref("crisp-test/busybox:1.0")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.Images().PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return ref
}

// buildFailpointBins builds crispd with failpoints, and crispctl, into a
// temp dir, as `make build` does but with the crisp_failpoints tag.
func buildFailpointBins(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("find module root: %v", err)
	}
	const tags = "containers_image_openpgp,exclude_graphdriver_btrfs"
	for _, b := range []struct{ name, tags string }{{"crispd", tags + ",crisp_failpoints"}, {"crispctl", tags}} {
		cmd := exec.Command("go", "build", "-buildvcs=false", "-tags", b.tags, "-o", filepath.Join(dir, b.name), "./cmd/"+b.name)
		cmd.Dir = strings.TrimSpace(string(root))
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s with failpoints: %v\n%s", b.name, err, out)
		}
	}
	return dir
}

// sweep stops crispd and removes whatever crisp leaked, so that the
// machine is left as it was: runtime containers, monitors, infra
// processes, mounts under the daemon's dirs and this daemon's cgroups.
// What it finds has been reported as violations already.
func (c *chaos) sweep() {
	d := c.d
	d.Stop()
	var swept []string
	live, _ := runtimeContainers(d)
	for id, l := range live {
		root := filepath.Join(d.RunDir, l.Handler)
		exec.Command(l.Handler, "--root", root, "kill", id, "KILL").Run()
		exec.Command(l.Handler, "--root", root, "delete", "--force", id).Run()
		swept = append(swept, l.Handler+" container "+short(id))
	}
	ps, _ := scanProcs(d)
	for id, pid := range ps.monitors {
		syscall.Kill(pid, syscall.SIGKILL)
		swept = append(swept, "monitor of "+short(id))
	}
	for id, pid := range ps.infras {
		syscall.Kill(pid, syscall.SIGKILL)
		swept = append(swept, "infra process of "+short(id))
	}
	ms, _ := mountsUnder(d.RunDir, d.Dir)
	slices.SortFunc(ms, func(a, b string) int { return len(b) - len(a) }) // deepest first
	for _, m := range ms {
		unix.Unmount(m, unix.MNT_DETACH)
		swept = append(swept, "mount "+m)
	}
	roots, _ := exec.Command("findmnt", "-rn", "-t", "cgroup,cgroup2", "-o", "TARGET").Output()
	for id := range c.ids {
		for _, root := range strings.Fields(string(roots)) {
			if os.Remove(filepath.Join(root, "crisp", id)) == nil {
				swept = append(swept, "cgroup "+filepath.Join(root, "crisp", short(id)))
			}
		}
	}
	if len(swept) > 0 {
		c.t.Logf("swept what crisp left behind: %s", strings.Join(swept, ", "))
	}
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a number", name, v)
	}
	return n
}

func keys[V any](m map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

// firstLine is the first line of a message that may run to many.
func firstLine(s string) string {
	if first, _, more := strings.Cut(s, "\n"); more {
		return first + " …"
	}
	return s
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
