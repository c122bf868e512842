package oci

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// testSubcontainerLifecycle drives one sub-container through every
// Runtime method that applies, with crisp's monitor watching it.
func testSubcontainerLifecycle(t *testing.T, rt *Runtime, sandboxID string, sbPid int) {
	ctx := testCtx(t)
	c, files := newSubcontainer(t, rt, sandboxID, []string{"sh", "-c", "echo hello-stdout; echo hello-stderr >&2; exec sleep 1000"})
	c.CgroupParent = "/" + cgroupBase + "/" + c.ID + "-pod"
	createCtx, cancelCreate := context.WithTimeout(ctx, 30*time.Second)
	t0 := time.Now()
	pid, err := rt.Create(createCtx, c)
	created := time.Since(t0)
	cancelCreate()
	if err != nil {
		t.Fatalf("Create() = %v", err)
	}
	if pid != sbPid {
		t.Errorf("Create() pid = %d, want the sandbox's %d", pid, sbPid)
	}
	if st, err := rt.State(ctx, c.ID); err != nil || st.Status != "created" || st.Bundle != files.Bundle {
		t.Errorf("State() after Create = %+v, %v, want created in %s", st, err, files.Bundle)
	}
	// conmon wrote "-1" within milliseconds here.
	time.Sleep(300 * time.Millisecond)
	if code, _, ok, err := ReadExit(files); ok || err != nil {
		t.Fatalf("exit file right after Create: %d, %v", code, err)
	}
	monPid, ok := monitorPid(files)
	if !ok {
		t.Fatal("no live monitor after Create")
	}
	checkConmonDetached(t, monPid, c.CgroupParent, c.ID)

	t1 := time.Now()
	if err := rt.Start(ctx, c.ID); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	t.Logf("create %v, start %v", created, time.Since(t1))
	if st, err := rt.State(ctx, c.ID); err != nil || st.Status != "running" {
		t.Fatalf("State() after Start = %+v, %v, want running", st, err)
	}
	if err := rt.Start(ctx, c.ID); err == nil {
		t.Error("second Start() = nil, want an error")
	}
	checkCRILog(t, waitLogLines(t, c.LogPath, 2), map[string]string{"hello-stdout": "stdout", "hello-stderr": "stderr"})

	out, errOut, code, err := rt.ExecSync(ctx, c.ID, specs.Process{
		Args: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, Env: []string{"PATH=/bin"}}, 10*time.Second)
	if err != nil || string(out) != "out\n" || string(errOut) != "err\n" || code != 3 {
		t.Errorf("ExecSync() = %q, %q, %d, %v, want out, err, 3, nil", out, errOut, code, err)
	}

	if s, err := rt.Stats(ctx, c.ID); err != nil || s.Pids == 0 {
		t.Errorf("Stats() = %+v, %v", s, err)
	}

	if err := os.Rename(c.LogPath, c.LogPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := ReopenLog(ctx, files, c.LogPath); err != nil {
		t.Fatalf("ReopenLog() = %v", err)
	}
	_, _, code, err = rt.ExecSync(ctx, c.ID, specs.Process{
		Args: []string{"sh", "-c", "echo after-reopen > /proc/1/fd/1"}, Env: []string{"PATH=/bin"}}, 10*time.Second)
	if err != nil || code != 0 {
		t.Fatalf("ExecSync(echo > /proc/1/fd/1) = %d, %v", code, err)
	}
	checkCRILog(t, waitLogLines(t, c.LogPath, 1), map[string]string{"after-reopen": "stdout"})

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	exits, err := WatchExits(watchCtx, rt.files.Exits())
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := rt.Kill(ctx, c.ID, syscall.SIGKILL, false); err != nil {
		t.Fatalf("Kill() = %v", err)
	}
	select {
	case id := <-exits:
		took := time.Since(killed)
		if id != c.ID {
			t.Errorf("WatchExits reported %q, want %q", id, c.ID)
		}
		if took > 2*time.Second {
			t.Errorf("exit reported %v after kill, want within 2s", took)
		}
		t.Logf("exit reported %v after kill", took)
	case <-time.After(5 * time.Second):
		t.Fatal("WatchExits reported nothing within 5s of SIGKILL")
	}
	if code, oom, ok, err := ReadExit(files); err != nil || !ok || code != 137 || oom {
		t.Errorf("ReadExit() = %d, %v, %v, %v, want 137, false, true, nil", code, oom, ok, err)
	}
	if st, err := rt.State(ctx, c.ID); err != nil || st.Status != "stopped" {
		t.Errorf("State() after kill = %+v, %v, want stopped", st, err)
	}
	if !waitFor(5*time.Second, func() bool { return !isMonitorOf(monPid, c.ID) }) {
		t.Errorf("monitor %d still running after its container exited", monPid)
	}
	if data, err := os.ReadFile(files.MonitorLog()); err == nil {
		t.Logf("monitor.log:\n%s", data)
	}
	if err := ReopenLog(ctx, files, ""); !errors.Is(err, ErrNotRunning) {
		t.Errorf("ReopenLog() after the monitor exited = %v, want ErrNotRunning", err)
	}
	if err := rt.Start(ctx, c.ID); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Start() after exit = %v, want ErrNotRunning", err)
	}
	t2 := time.Now()
	if err := rt.Delete(ctx, c.ID, false); err != nil {
		t.Fatalf("Delete() = %v", err)
	}
	t.Logf("delete %v", time.Since(t2))
	if _, err := rt.State(ctx, c.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("State() after Delete = %v, want ErrNotFound", err)
	}
}

// testMonitorOutlivesLauncher creates and starts a sub-container from
// another process that then exits, as crispd would on a restart.
func testMonitorOutlivesLauncher(t *testing.T, rt *Runtime, sandboxID string) {
	ctx := testCtx(t)
	c, files := newSubcontainer(t, rt, sandboxID, []string{"sleep", "1000"})
	job, err := json.Marshal(launchJob{Handler: rt.Handler(), Conmon: conmonBin, RunDir: rt.files.RunDir(), Opts: c})
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	launcher := exec.Command(exe, testLaunchCmd, string(job))
	if out, err := launcher.CombinedOutput(); err != nil {
		t.Fatalf("launcher: %v: %s", err, out)
	}
	monPid, ok := monitorPid(files)
	if !ok {
		t.Fatal("no live monitor after the launcher exited")
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(monPid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(stat)[strings.LastIndexByte(string(stat), ')')+1:])
	if fields[1] == strconv.Itoa(launcher.Process.Pid) || fields[3] == strconv.Itoa(syscallGetsid()) {
		t.Errorf("monitor %d: ppid %s, session %s; want it detached", monPid, fields[1], fields[3])
	}
	time.Sleep(500 * time.Millisecond)
	if st, err := rt.State(ctx, c.ID); err != nil || st.Status != "running" {
		t.Fatalf("State() with the launcher gone = %+v, %v, want running", st, err)
	}
	if err := rt.Kill(ctx, c.ID, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if code := waitExitFile(t, files, 2*time.Second); code != 137 {
		t.Errorf("exit code = %d, want 137", code)
	}
}
