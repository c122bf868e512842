package oci

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCreateRejectedSpec(t *testing.T) {
	// The rootfs is missing: each runtime's message names it.
	for _, tc := range []struct{ typ, want string }{
		{TypeRunc, "invalid rootfs"},
		{TypeRunsc, "missing-rootfs: no such file or directory"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			rt := newTestRuntime(t, tc.typ)
			ctx := testCtx(t)
			c, files := newBundle(t, rt, []string{"true"}, func(s *specs.Spec) { s.Root.Path = "missing-rootfs" })
			pid, err := rt.Create(ctx, c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Create(missing rootfs) = %d, %v, want an error containing %q", pid, err, tc.want)
			}
			t.Logf("%s: %v", tc.typ, err)
			if _, err := rt.State(ctx, c.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("State() after a failed Create = %v, want ErrNotFound", err)
			}
			if left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cgroupBase, c.ID)); len(left) > 0 {
				t.Errorf("cgroups left after a failed Create: %v", left)
			}
			if conmonPid, err := readPidFile(files.ConmonPidFile()); err == nil {
				if !waitFor(5*time.Second, func() bool { return !conmonAlive(conmonPid) }) {
					t.Errorf("conmon %d still running after a failed Create", conmonPid)
				}
			}
		})
	}
}

func TestOOMKilled(t *testing.T) {
	rt := newTestRuntime(t, TypeRunc)
	ctx := testCtx(t)
	limit := int64(32 << 20)
	// Doubling a shell string passes 32 MiB within a few dozen steps.
	c, files := newBundle(t, rt, []string{"sh", "-c", "x=0123456789abcdef; while true; do x=$x$x; done"}, func(s *specs.Spec) {
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &limit}
	})
	if _, err := rt.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	var (
		code   int32
		oom    bool
		exited bool
		err    error
	)
	waitFor(30*time.Second, func() bool {
		code, oom, exited, err = ReadExit(files)
		return exited || err != nil
	})
	if err != nil || !exited || code != 137 || !oom {
		t.Errorf("ReadExit() = %d, oom %v, exited %v, %v; want 137, oom, exited", code, oom, exited, err)
	}
}

func TestTerminal(t *testing.T) {
	rt := newTestRuntime(t, TypeRunc)
	ctx := testCtx(t)
	c, files := newBundle(t, rt, []string{"sh", "-c", "echo tty-ok; exec sleep 1000"}, func(s *specs.Spec) {
		s.Process.Terminal = true
	})
	c.Terminal, c.Stdin = true, true
	if _, err := rt.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(5*time.Second, func() bool {
		b, _ := os.ReadFile(c.LogPath)
		return strings.Contains(string(b), "tty-ok")
	})
	b, _ := os.ReadFile(c.LogPath)
	if !strings.Contains(string(b), " stdout ") || !strings.Contains(string(b), "tty-ok") {
		t.Errorf("terminal log = %q, want tty-ok on stdout", b)
	}
	if _, err := os.Stat(files.AttachSocket()); err != nil {
		t.Errorf("attach socket: %v", err)
	}
}

// TestConmonOutlivesLauncher creates and starts a container from a child
// process that then exits, as crispd would on restart, and checks that
// this process can still inspect, exec into, kill and delete it.
func TestConmonOutlivesLauncher(t *testing.T) {
	if spec := os.Getenv("CRISP_OCI_TEST_LAUNCH"); spec != "" {
		launch(t, spec)
		return
	}
	rt := newTestRuntime(t, TypeRunc)
	ctx := testCtx(t)
	c, files := newBundle(t, rt, []string{"sh", "-c", "exec sleep 1000"}, nil)
	spec, err := json.Marshal(launchJob{Handler: rt.Handler(), Conmon: conmonBin, RunDir: rt.files.RunDir(), Opts: c})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestConmonOutlivesLauncher$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CRISP_OCI_TEST_LAUNCH="+string(spec))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("launcher: %v\n%s", err, out)
	}
	time.Sleep(200 * time.Millisecond)
	if st, err := rt.State(ctx, c.ID); err != nil || st.Status != "running" {
		t.Fatalf("State() after the launcher exited = %+v, %v, want running", st, err)
	}
	conmonPid, err := readPidFile(files.ConmonPidFile())
	if err != nil || !conmonAlive(conmonPid) {
		t.Fatalf("conmon gone after the launcher exited: %v", err)
	}
	if out, _, code, err := rt.ExecSync(ctx, c.ID, specs.Process{Args: []string{"echo", "still-here"}, Env: []string{"PATH=/bin"}}, 10*time.Second); err != nil || code != 0 || string(out) != "still-here\n" {
		t.Errorf("ExecSync() = %q, %d, %v", out, code, err)
	}
	if err := rt.Kill(ctx, c.ID, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	waitFor(5*time.Second, func() bool {
		_, ok, _ := exitFileCode(files.ExitFile)
		return ok
	})
	if code, ok, err := exitFileCode(files.ExitFile); !ok || err != nil || code != 137 {
		t.Errorf("exit file = %d, %v, %v, want 137", code, ok, err)
	}
	if err := rt.Delete(ctx, c.ID, false); err != nil {
		t.Error(err)
	}
}

// launch is the child side of TestConmonOutlivesLauncher: spec is a
// launchJob.
func launch(t *testing.T, spec string) {
	if err := launchMain(spec); err != nil {
		t.Fatal(err)
	}
}

// TestCreateStartLatency measures Create+Start (conmon, sync pipe, start)
// several times per runtime and logs the spread.
func TestCreateStartLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short")
	}
	for _, tc := range []struct {
		typ string
		n   int
	}{{TypeRunc, 5}, {TypeRunsc, 3}} {
		t.Run(tc.typ, func(t *testing.T) {
			rt := newTestRuntime(t, tc.typ)
			ctx := testCtx(t)
			var created, started []time.Duration
			for range tc.n {
				c, _ := newBundle(t, rt, []string{"sleep", "1000"}, nil)
				t0 := time.Now()
				if _, err := rt.Create(ctx, c); err != nil {
					t.Fatal(err)
				}
				created = append(created, time.Since(t0))
				if err := rt.Start(ctx, c.ID); err != nil {
					t.Fatal(err)
				}
				started = append(started, time.Since(t0))
				t0 = time.Now()
				if err := rt.Delete(ctx, c.ID, true); err != nil {
					t.Fatal(err)
				}
				t.Logf("%s: delete --force of a running container %v", tc.typ, time.Since(t0))
			}
			slices.Sort(created)
			slices.Sort(started)
			t.Logf("%s: created (pid on sync pipe) %v .. %v; started %v .. %v (n=%d)",
				tc.typ, created[0], created[len(created)-1], started[0], started[len(started)-1], tc.n)
		})
	}
}
