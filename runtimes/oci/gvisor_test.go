package oci

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crisp-cri/crisp/runtimes/layout"
)

// newGVisorRuntime is the runsc test runtime with the test binary as
// its sub-container monitor.
func newGVisorRuntime(t *testing.T) *Runtime {
	t.Helper()
	rt := newTestRuntime(t, TypeRunsc)
	h := rt.Handler()
	h.Monitor = testMonitor(t)
	return New(h, conmonBin, rt.files, nil)
}

// annotate sets the pod annotations in the container's config.json.
func annotate(t *testing.T, files layout.Container, typ, sandboxID string) {
	t.Helper()
	spec, err := files.ReadSpec()
	if err != nil {
		t.Fatal(err)
	}
	spec.Annotations = map[string]string{
		"io.kubernetes.cri.container-type": typ,
		"io.kubernetes.cri.sandbox-id":     sandboxID,
	}
	if err := files.WriteSpec(spec); err != nil {
		t.Fatal(err)
	}
}

// startSandbox creates and starts a gVisor pod's sandbox container
// through conmon and returns it with its pid (the runsc sandbox's).
func startSandbox(t *testing.T, rt *Runtime) (CreateOpts, int) {
	t.Helper()
	ctx := testCtx(t)
	sb, files := newBundle(t, rt, []string{"sleep", "1000"}, nil)
	annotate(t, files, "sandbox", sb.ID)
	pid, err := rt.Create(ctx, sb)
	if err != nil {
		t.Fatalf("Create(sandbox) = %v", err)
	}
	if err := rt.Start(ctx, sb.ID); err != nil {
		t.Fatalf("Start(sandbox) = %v", err)
	}
	return sb, pid
}

// newSubcontainer writes the bundle of a container joining sandboxID.
func newSubcontainer(t *testing.T, rt *Runtime, sandboxID string, args []string) (CreateOpts, layout.Container) {
	t.Helper()
	c, files := newBundle(t, rt, args, nil)
	annotate(t, files, "container", sandboxID)
	return c, files
}

// waitExitFile waits up to d for the container's exit file, and checks
// that the copy in the bundle (the persist dir) says the same.
func waitExitFile(t *testing.T, files layout.Container, d time.Duration) int32 {
	t.Helper()
	var code int32
	ok := waitFor(d, func() bool {
		var done bool
		code, done, _ = exitFileCode(files.ExitFile)
		return done
	})
	if !ok {
		t.Fatalf("no exit file for %s within %v", files.ID, d)
	}
	persisted, ok, err := exitFileCode(files.PersistExitFile())
	if err != nil || !ok || persisted != code {
		t.Errorf("persist dir exit = %d, %v, %v, want %d", persisted, ok, err, code)
	}
	return code
}

// TestGVisorPod runs containers inside one gVisor sandbox, each watched
// by crisp's monitor, with real runsc and the test binary as monitor.
func TestGVisorPod(t *testing.T) {
	rt := newGVisorRuntime(t)
	sb, sbPid := startSandbox(t, rt)
	t.Run("lifecycle", func(t *testing.T) { testSubcontainerLifecycle(t, rt, sb.ID, sbPid) })
	t.Run("exit code", func(t *testing.T) {
		ctx := testCtx(t)
		c, files := newSubcontainer(t, rt, sb.ID, []string{"sh", "-c", "echo bye; sleep 0.2; exit 3"})
		if _, err := rt.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := rt.Start(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		if code := waitExitFile(t, files, 5*time.Second); code != 3 {
			t.Errorf("exit code = %d, want 3", code)
		}
		checkCRILog(t, waitLogLines(t, c.LogPath, 1), map[string]string{"bye": "stdout"})
		if err := rt.Delete(ctx, c.ID, false); err != nil {
			t.Errorf("Delete() = %v", err)
		}
	})
	t.Run("launcher exits", func(t *testing.T) { testMonitorOutlivesLauncher(t, rt, sb.ID) })
	t.Run("deleted unstarted", func(t *testing.T) {
		ctx := testCtx(t)
		c, files := newSubcontainer(t, rt, sb.ID, []string{"sleep", "1000"})
		if _, err := rt.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
		monPid, ok := monitorPid(files)
		if !ok {
			t.Fatal("no monitor after Create")
		}
		if err := rt.Delete(ctx, c.ID, true); err != nil {
			t.Fatal(err)
		}
		if code := waitExitFile(t, files, 5*time.Second); code != killedExitCode {
			t.Errorf("exit code = %d, want %d", code, killedExitCode)
		}
		if !waitFor(5*time.Second, func() bool { return !isMonitorOf(monPid, c.ID) }) {
			t.Errorf("monitor %d still running after Delete", monPid)
		}
	})
	t.Run("started elsewhere", func(t *testing.T) {
		ctx := testCtx(t)
		c, files := newSubcontainer(t, rt, sb.ID, []string{"sleep", "1000"})
		if _, err := rt.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
		// A plain runsc start, not through the monitor: the monitor
		// notices within a second and still records the exit.
		if _, err := rt.run(ctx, nil, "start", c.ID); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		if err := rt.Kill(ctx, c.ID, syscall.SIGKILL, false); err != nil {
			t.Fatal(err)
		}
		if code := waitExitFile(t, files, 2*time.Second); code != 137 {
			t.Errorf("exit code = %d, want 137", code)
		}
	})
	t.Run("attach", func(t *testing.T) {
		ctx := testCtx(t)
		c, files := newSubcontainer(t, rt, sb.ID, []string{"sh", "-c", "while read l; do echo got $l; echo err $l >&2; done; echo bye"})
		c.Stdin, c.StdinOnce = true, true
		if _, err := rt.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
		conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: files.AttachSocket(), Net: "unixpacket"})
		if err != nil {
			t.Fatalf("dial the attach socket: %v", err)
		}
		defer conn.Close()
		if err := rt.Start(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte("hello\n")); err != nil {
			t.Fatal(err)
		}
		// Output comes as conmon's packets: a stream byte, then data.
		got := map[byte]string{}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64<<10)
		for !strings.Contains(got[attachStdout], "got hello") || !strings.Contains(got[attachStderr], "err hello") {
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("read attach: %v; so far %q", err, got)
			}
			if n > 1 {
				got[buf[0]] += string(buf[1:n])
			}
		}
		// Closing our end closes the container's stdin (stdin_once): the
		// loop ends and the container exits 0.
		if err := conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if code := waitExitFile(t, files, 10*time.Second); code != 0 {
			t.Errorf("exit code after stdin closed = %d, want 0", code)
		}
		if data, err := os.ReadFile(c.LogPath); err != nil || !strings.Contains(string(data), "stdout F got hello") || !strings.Contains(string(data), "bye") {
			t.Errorf("log = %q, %v; want the container's output too", data, err)
		}
	})
	t.Run("rejected", func(t *testing.T) {
		ctx := testCtx(t)
		c, files := newSubcontainer(t, rt, "crisptest-no-such-sandbox", []string{"true"})
		_, err := rt.Create(ctx, c)
		if err == nil || !strings.Contains(err.Error(), "runtime failed") {
			t.Fatalf("Create(no such sandbox) = %v, want the runtime's error", err)
		}
		t.Logf("rejected: %v", err)
		if _, err := rt.State(ctx, c.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("State() after a failed Create = %v, want ErrNotFound", err)
		}
		if pid, err := readPidFile(files.MonitorPidFile()); err == nil {
			if !waitFor(5*time.Second, func() bool { return !isMonitorOf(pid, c.ID) }) {
				t.Errorf("monitor %d still running after a failed Create", pid)
			}
		}
	})
	t.Run("start fails", func(t *testing.T) {
		ctx := testCtx(t)
		c, files := newSubcontainer(t, rt, sb.ID, []string{"true"})
		if err := os.RemoveAll(filepath.Join(files.Bundle, "rootfs")); err != nil {
			t.Fatal(err)
		}
		// runsc checks the rootfs of a sub-container only when it starts.
		if _, err := rt.Create(ctx, c); err != nil {
			t.Fatalf("Create(no rootfs) = %v", err)
		}
		err := rt.Start(ctx, c.ID)
		if err == nil || !strings.Contains(err.Error(), "starting container") {
			t.Fatalf("Start(no rootfs) = %v, want runsc's error", err)
		}
		t.Logf("Start(no rootfs) = %v", err)
		// runsc's message went to the container's stderr pipe, not the log.
		if data, err := os.ReadFile(c.LogPath); err != nil || len(data) > 0 {
			t.Errorf("log after a failed start = %q, %v, want it empty", data, err)
		}
	})
}

// TestGVisorSandboxDies: when the sandbox dies under a running
// sub-container, runsc wait fails (EOF from the dead sandbox), and the
// monitor records the sub-container as killed.
func TestGVisorSandboxDies(t *testing.T) {
	rt := newGVisorRuntime(t)
	ctx := testCtx(t)
	sb, _ := startSandbox(t, rt)
	c, files := newSubcontainer(t, rt, sb.ID, []string{"sleep", "1000"})
	if _, err := rt.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	monPid, ok := monitorPid(files)
	if !ok {
		t.Fatal("no monitor")
	}
	killed := time.Now()
	if err := rt.Kill(ctx, sb.ID, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if code := waitExitFile(t, files, 2*time.Second); code != killedExitCode {
		t.Errorf("exit code = %d, want %d", code, killedExitCode)
	}
	t.Logf("sub-container exit recorded %v after the sandbox was killed", time.Since(killed))
	if !waitFor(5*time.Second, func() bool { return !isMonitorOf(monPid, c.ID) }) {
		t.Errorf("monitor %d still running", monPid)
	}
}
