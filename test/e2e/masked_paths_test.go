package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
)

// A container's masked and read-only paths hold on both runtimes: runc
// applies linux.maskedPaths and readonlyPaths itself; gVisor ignores
// them, so crisp gives it mounts instead. A masked file reads empty, a
// masked directory and a read-only one cannot be written, a file masked
// beneath a read-only directory stays masked; a path the image lacks is
// skipped, as runc skips it.
func TestMaskedAndReadonlyPaths(t *testing.T) {
	harness.RequireRoot(t)
	for _, tc := range []struct{ name, handler string }{{"runc", "runc"}, {"runsc", "runsc"}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.handler == "runsc" {
				harness.RequireTool(t, "runsc")
			}
			d := harness.Start(t)
			image := withBusybox(t, d)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			rt := d.Runtime()
			pc := podConfig("masks-" + tc.name)
			pc.LogDirectory = t.TempDir()
			pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc, RuntimeHandler: tc.handler})
			if err != nil {
				t.Fatal(err)
			}
			cfg := containerConfig("main", image, "sleep", "600")
			cfg.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				MaskedPaths:   []string{"/etc/group", "/tmp", "/no/such/path"},
				ReadonlyPaths: []string{"/etc", "/no/such/dir"},
			}}
			c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cfg, SandboxConfig: pc})
			if err != nil {
				t.Fatalf("CreateContainer() = %v", err)
			}
			if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
				t.Fatalf("StartContainer() = %v", err)
			}
			run := func(cmd ...string) (int32, string) {
				r, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: c.ContainerId, Cmd: cmd, Timeout: 30})
				if err != nil {
					t.Fatalf("exec %v = %v", cmd, err)
				}
				return r.ExitCode, string(r.Stdout) + string(r.Stderr)
			}
			if code, out := run("sh", "-c", "wc -c < /etc/group; wc -c < /etc/passwd"); code != 0 || !strings.HasPrefix(out, "0\n") || strings.HasSuffix(out, "\n0\n") {
				t.Errorf("sizes of /etc/group (masked) and /etc/passwd = exit %d, %q; want 0 and more", code, out)
			}
			for _, p := range []string{"/etc/x", "/tmp/x"} {
				if code, out := run("touch", p); code == 0 || !strings.Contains(out, "Read-only file system") {
					t.Errorf("touch %s (read-only, masked) = exit %d, %q; want Read-only file system", p, code, out)
				}
			}
			if code, out := run("touch", "/x"); code != 0 {
				t.Errorf("touch /x (writable rootfs) = exit %d, %q; want 0", code, out)
			}
		})
	}
}
