package oci

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestLifecycle drives one container through every Runtime method on
// runc and on runsc, with real conmon.
func TestLifecycle(t *testing.T) {
	for _, typ := range []string{TypeRunc, TypeRunsc} {
		t.Run(typ, func(t *testing.T) { testLifecycle(t, typ) })
	}
}

func testLifecycle(t *testing.T, typ string) {
	rt := newTestRuntime(t, typ)
	ctx := testCtx(t)
	c, files := newBundle(t, rt, []string{"sh", "-c", "echo hello-stdout; echo hello-stderr >&2; exec sleep 1000"}, nil)
	c.CgroupParent = "/" + cgroupBase + "/" + c.ID + "-pod"

	// The launching context ends as soon as Create returns; conmon and
	// the container must not care.
	createCtx, cancelCreate := context.WithTimeout(ctx, 30*time.Second)
	t0 := time.Now()
	pid, err := rt.Create(createCtx, c)
	created := time.Since(t0)
	cancelCreate()
	if err != nil {
		t.Fatalf("Create() = %v", err)
	}
	if pid <= 0 {
		t.Fatalf("Create() pid = %d", pid)
	}
	st, err := rt.State(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "created" || st.PID != pid || st.Bundle != files.Bundle {
		t.Errorf("State() after Create = %+v, want created, pid %d, bundle %s", st, pid, files.Bundle)
	}
	if got, err := InitPID(files); err != nil || got != pid {
		t.Errorf("InitPID() = %d, %v, want %d", got, err, pid)
	}
	if !MonitorAlive(files) {
		t.Error("MonitorAlive() = false after Create")
	}
	t1 := time.Now()
	if err := rt.Start(ctx, c.ID); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	t.Logf("%s: create %v, start %v, create+start %v", typ, created, time.Since(t1), time.Since(t0))
	if st, err := rt.State(ctx, c.ID); err != nil || st.Status != "running" {
		t.Fatalf("State() after Start = %+v, %v, want running", st, err)
	}
	if err := rt.Start(ctx, c.ID); err == nil {
		t.Error("second Start() = nil, want an error")
	}

	conmonPid, err := readPidFile(files.ConmonPidFile())
	if err != nil {
		t.Fatal(err)
	}
	checkConmonDetached(t, conmonPid, c.CgroupParent, c.ID)

	t.Run("log", func(t *testing.T) {
		lines := waitLogLines(t, c.LogPath, 2)
		checkCRILog(t, lines, map[string]string{"hello-stdout": "stdout", "hello-stderr": "stderr"})
	})

	t.Run("exec", func(t *testing.T) {
		out, errOut, code, err := rt.ExecSync(ctx, c.ID, specs.Process{
			Args: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, Env: []string{"PATH=/bin"}}, 10*time.Second)
		if err != nil || string(out) != "out\n" || string(errOut) != "err\n" || code != 3 {
			t.Errorf("ExecSync() = %q, %q, %d, %v, want out, err, 3, nil", out, errOut, code, err)
		}
		out, _, code, err = rt.ExecSync(ctx, c.ID, specs.Process{Args: []string{"id", "-u"}, Env: []string{"PATH=/bin"}}, 0)
		if err != nil || strings.TrimSpace(string(out)) != "0" || code != 0 {
			t.Errorf("ExecSync(id -u) = %q, %d, %v", out, code, err)
		}
	})

	t.Run("exec timeout", func(t *testing.T) {
		start := time.Now()
		_, _, _, err := rt.ExecSync(ctx, c.ID, specs.Process{
			Args: []string{"sh", "-c", "echo started; exec sleep 77"}, Env: []string{"PATH=/bin"}}, 500*time.Millisecond)
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("ExecSync(sleep) = %v, want DeadlineExceeded", err)
		}
		if took > 5*time.Second {
			t.Errorf("ExecSync(sleep) took %v", took)
		}
		t.Logf("%s: exec timeout returned after %v", typ, took)
		ok := waitFor(3*time.Second, func() bool {
			out, _, _, err := rt.ExecSync(ctx, c.ID, specs.Process{Args: []string{"ps"}, Env: []string{"PATH=/bin"}}, 10*time.Second)
			return err == nil && !strings.Contains(string(out), "sleep 77")
		})
		if !ok {
			t.Error("the timed-out exec process is still running")
		}
	})

	t.Run("list", func(t *testing.T) {
		all, err := rt.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(all, func(s State) bool { return s.ID == c.ID })
		if i < 0 || all[i].Status != "running" {
			t.Errorf("List() = %+v, want %s running", all, c.ID)
		}
	})

	t.Run("stats", func(t *testing.T) {
		s, err := rt.Stats(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if s.MemoryUsageBytes == 0 || s.MemoryWorkingSetBytes == 0 || s.Pids == 0 || s.MemoryWorkingSetBytes > s.MemoryUsageBytes {
			t.Errorf("Stats() = %+v, want memory and pids > 0", s)
		}
	})

	t.Run("update", func(t *testing.T) {
		limit := int64(96 << 20)
		err := rt.Update(ctx, c.ID, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &limit}})
		if typ == TypeRunsc {
			if !errors.Is(err, ErrUnsupported) {
				t.Errorf("Update() on runsc = %v, want ErrUnsupported", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", cgroupBase, c.ID, "memory.limit_in_bytes"))
		if err != nil || strings.TrimSpace(string(got)) != strconv.FormatInt(limit, 10) {
			t.Errorf("memory.limit_in_bytes = %q, %v, want %d", got, err, limit)
		}
	})

	t.Run("reopen log", func(t *testing.T) {
		if err := os.Rename(c.LogPath, c.LogPath+".1"); err != nil {
			t.Fatal(err)
		}
		if err := ReopenLog(ctx, files, c.LogPath); err != nil {
			t.Fatalf("ReopenLog() = %v", err)
		}
		// Write to init's stdout, which conmon reads.
		_, _, code, err := rt.ExecSync(ctx, c.ID, specs.Process{
			Args: []string{"sh", "-c", "echo after-reopen > /proc/1/fd/1"}, Env: []string{"PATH=/bin"}}, 10*time.Second)
		if err != nil || code != 0 {
			t.Fatalf("ExecSync(echo > /proc/1/fd/1) = %d, %v", code, err)
		}
		lines := waitLogLines(t, c.LogPath, 1)
		checkCRILog(t, lines, map[string]string{"after-reopen": "stdout"})
	})

	ctxW, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	exits, err := WatchExits(ctxW, rt.files.Exits())
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := rt.Kill(ctx, c.ID, syscall.SIGKILL, false); err != nil {
		t.Fatalf("Kill() = %v", err)
	}
	select {
	case id := <-exits:
		if id != c.ID {
			t.Errorf("WatchExits reported %q, want %q", id, c.ID)
		}
		// A slow report once meant a zombie in the pid namespace.
		if took := time.Since(killed); took > time.Second {
			t.Errorf("%s: exit reported %v after kill, want within 1s", typ, took)
		} else {
			t.Logf("%s: exit reported %v after kill", typ, took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WatchExits reported nothing within 5s of SIGKILL")
	}
	code, oom, ok, err := ReadExit(files)
	if err != nil || !ok || code != 137 || oom {
		t.Errorf("ReadExit() = %d, %v, %v, %v, want 137, false, true, nil", code, oom, ok, err)
	}
	if st, err := rt.State(ctx, c.ID); err != nil || st.Status != "stopped" {
		t.Errorf("State() after kill = %+v, %v, want stopped", st, err)
	}
	if err := rt.Kill(ctx, c.ID, syscall.SIGKILL, false); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Kill() of a stopped container = %v, want ErrNotRunning", err)
	}
	if _, _, _, err := rt.ExecSync(ctx, c.ID, specs.Process{Args: []string{"true"}}, 0); !errors.Is(err, ErrNotRunning) {
		t.Errorf("ExecSync() in a stopped container = %v, want ErrNotRunning", err)
	}
	if !waitFor(5*time.Second, func() bool { return !conmonAlive(conmonPid) }) {
		t.Errorf("conmon %d still running after its container exited", conmonPid)
	}
	if MonitorAlive(files) {
		t.Error("MonitorAlive() = true after conmon exited")
	}
	if err := ReopenLog(ctx, files, ""); !errors.Is(err, ErrNotRunning) {
		t.Errorf("ReopenLog() after conmon exited = %v, want ErrNotRunning", err)
	}

	t0 = time.Now()
	if err := rt.Delete(ctx, c.ID, false); err != nil {
		t.Fatalf("Delete() = %v", err)
	}
	t.Logf("%s: delete %v", typ, time.Since(t0))
	if _, err := rt.State(ctx, c.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("State() after Delete = %v, want ErrNotFound", err)
	}
	if err := rt.Delete(ctx, c.ID, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete() = %v, want ErrNotFound", err)
	}
	if err := rt.Delete(ctx, c.ID, true); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete(force) of a deleted id = %v, want ErrNotFound", err)
	}
	if err := rt.Kill(ctx, c.ID, syscall.SIGKILL, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("Kill() of a deleted id = %v, want ErrNotFound", err)
	}
	all, err := rt.List(ctx)
	if err != nil || slices.ContainsFunc(all, func(s State) bool { return s.ID == c.ID }) {
		t.Errorf("List() after Delete = %+v, %v, want no %s", all, err, c.ID)
	}
}

// checkConmonDetached checks that conmon left our process tree and
// session and sits in container id's monitor cgroup under parent, on the
// v1 memory hierarchy.
func checkConmonDetached(t *testing.T, pid int, parent, id string) {
	t.Helper()
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatalf("conmon %d: %v", pid, err)
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	ppid, _ := strconv.Atoi(fields[1])
	sid, _ := strconv.Atoi(fields[3])
	if ppid == os.Getpid() || sid == syscallGetsid() {
		t.Errorf("conmon %d: ppid %d, session %d; want it detached from us (%d)", pid, ppid, sid, os.Getpid())
	}
	cg, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if want := MonitorCgroup(parent, id); !strings.Contains(string(cg), ":memory:"+want+"\n") {
		t.Errorf("conmon cgroups:\n%s\nwant memory:%s", cg, want)
	}
}

func syscallGetsid() int {
	sid, _ := unix.Getsid(0)
	return sid
}
