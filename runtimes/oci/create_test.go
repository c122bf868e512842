package oci

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestConmonArgs(t *testing.T) {
	r := New(Handler{Name: "gvisor", Type: TypeRunsc, Path: "/usr/bin/runsc", Root: "/run/x/runsc",
		ExtraArgs: []string{"--network=none", "--oci-seccomp"}}, "/usr/bin/conmon", nil)
	c := CreateOpts{ID: "c1", Bundle: "/b", LogPath: "/l/c1.log", ExitDir: "/e", PersistDir: "/p", SocketDir: "/s"}
	base := "--api-version 1 -c c1 -u c1 -n c1 -r /usr/bin/runsc --runtime-arg --root=/run/x/runsc " +
		"--runtime-arg --network=none --runtime-arg --oci-seccomp -b /b -p /b/pidfile -P /b/conmon.pid " +
		"--persist-dir /p --exit-dir /e -l /l/c1.log --socket-dir-path /s --full-attach --log-level info"
	tests := []struct {
		name                       string
		terminal, stdin, stdinOnce bool
		want                       string
	}{
		{"plain", false, false, false, base},
		{"terminal", true, true, false, base + " -t"},
		{"stdin", false, true, false, base + " -i --leave-stdin-open"},
		{"stdin once", false, true, true, base + " -i"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := c
			c.Terminal, c.Stdin, c.StdinOnce = tt.terminal, tt.stdin, tt.stdinOnce
			got := strings.Join(r.conmonArgs(c), " ")
			if got != tt.want {
				t.Errorf("conmonArgs() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestCreateValidates(t *testing.T) {
	r := New(Handler{Name: "runc", Type: TypeRunc, Path: "/nonexistent", Root: t.TempDir()}, "/nonexistent", nil)
	dir := t.TempDir()
	good := CreateOpts{ID: "c1", Bundle: dir, LogPath: dir + "/l", ExitDir: dir + "/e", PersistDir: dir + "/p"}
	tests := []struct {
		name string
		edit func(*CreateOpts)
		want string
	}{
		{"bad id", func(c *CreateOpts) { c.ID = "a/b" }, "invalid container id"},
		{"no persist dir", func(c *CreateOpts) { c.PersistDir = "" }, "no persist dir"},
		{"long bundle", func(c *CreateOpts) { c.Bundle = "/" + strings.Repeat("b", 110) }, "too long"},
		{"no conmon", func(c *CreateOpts) {}, "start conmon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			_, err := r.Create(context.Background(), c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Create() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestCreateTimeout runs real conmon with a runtime whose create hangs:
// Create must give up with ctx, kill conmon (and with it the runtime, by
// conmon's PDEATHSIG) and clean up.
func TestCreateTimeout(t *testing.T) {
	needRoot(t)
	r, dir := fakeRuntime(t, TypeRunc, `case "$*" in *" create "*) exec sleep 31.5;; esac`)
	r.conmon = conmonBin
	bundle := t.TempDir()
	c := CreateOpts{ID: "hang1", Bundle: bundle, LogPath: filepath.Join(bundle, "ctr.log"),
		ExitDir: filepath.Join(bundle, "exits"), PersistDir: filepath.Join(bundle, "persist")}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Create(ctx, c)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Create() = %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Create() took %v", took)
	}
	conmonPid, err := readPidFile(filepath.Join(bundle, conmonPidName))
	if err != nil {
		t.Fatal(err)
	}
	if !waitFor(3*time.Second, func() bool { return !conmonAlive(conmonPid) }) {
		t.Errorf("conmon %d survived a timed-out Create", conmonPid)
		_ = syscall.Kill(conmonPid, syscall.SIGKILL)
	}
	if !waitFor(3*time.Second, func() bool { return len(findProcs("sleep\x0031.5")) == 0 }) {
		t.Errorf("the hung runtime survived: %v", findProcs("sleep\x0031.5"))
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "args"))
	if !strings.Contains(string(calls), "delete --force hang1") {
		t.Errorf("last runtime call = %q, want delete --force hang1", calls)
	}
}

// findProcs returns the pids whose command line contains s (NUL-separated).
func findProcs(s string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.Contains(string(cmdline), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestCreateSilentFailure: a runtime that fails without a word makes
// conmon exit without a sync message.
func TestCreateSilentFailure(t *testing.T) {
	needRoot(t)
	r, _ := fakeRuntime(t, TypeRunc, `case "$*" in *" create "*) exit 1;; esac`)
	r.conmon = conmonBin
	bundle := t.TempDir()
	c := CreateOpts{ID: "silent1", Bundle: bundle, LogPath: filepath.Join(bundle, "ctr.log"),
		ExitDir: filepath.Join(bundle, "exits"), PersistDir: filepath.Join(bundle, "persist")}
	_, err := r.Create(testCtx(t), c)
	if err == nil || !strings.Contains(err.Error(), "without reporting a pid") {
		t.Errorf("Create() = %v, want conmon exited without reporting a pid", err)
	}
}
