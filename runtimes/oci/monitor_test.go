package oci

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crisp-cri/crisp/runtimes/layout"
)

func TestMonitorArgs(t *testing.T) {
	a := MonitorArgs{ID: "c1", RunDir: "/r", Runtime: "/usr/bin/runsc", RuntimeRoot: "/run/x/runsc",
		RuntimeArgs: []string{"--network=host", "--oci-seccomp"}, LogPath: "/l/c1.log"}
	want := "--id=c1 --run-dir=/r --runtime=/usr/bin/runsc --runtime-root=/run/x/runsc " +
		"--runtime-arg=--network=host --runtime-arg=--oci-seccomp --log-path=/l/c1.log"
	if got := strings.Join(a.argv(), " "); got != want {
		t.Errorf("argv() =\n%s\nwant\n%s", got, want)
	}
	got, err := ParseMonitorArgs(a.argv())
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Errorf("ParseMonitorArgs(argv()) = %+v, %v, want %+v", got, err, a)
	}
	// The monitor finds the container's files where Create's layout put them.
	if f := a.files(); f != (layout.Container{ID: "c1", Bundle: "/r/c/c1", ExitFile: "/r/exits/c1"}) {
		t.Errorf("files() = %+v, want bundle /r/c/c1, exit file /r/exits/c1", f)
	}
	for name, argv := range map[string][]string{
		"no id":            a.argv()[1:],
		"bad id":           append(a.argv(), "--id=../x"),
		"no run dir":       append(a.argv(), "--run-dir="),
		"relative run dir": append(a.argv(), "--run-dir=r"),
		"old flag":         append(a.argv(), "--bundle=/b"),
		"extra argument":   append(a.argv(), "x"),
		"unknown flag":     append(a.argv(), "--nope"),
	} {
		if _, err := ParseMonitorArgs(argv); err == nil {
			t.Errorf("%s: ParseMonitorArgs() = nil error", name)
		}
	}
}

func TestCRILogWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	l, err := openCRILog(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 20, 48, 29, 809961575, time.FixedZone("x", 3600))
	if err := l.write("stdout", []byte("one\ntwo\npart"), now); err != nil {
		t.Fatal(err)
	}
	if err := l.write("stderr", []byte("\n"), now); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.reopen(); err != nil {
		t.Fatal(err)
	}
	if err := l.write("stdout", []byte("after\n"), now); err != nil {
		t.Fatal(err)
	}
	if err := l.close(); err != nil {
		t.Fatal(err)
	}
	ts := "2026-11-25T19:48:29.809961575+00:00"
	for file, want := range map[string]string{
		path + ".1": ts + " stdout F one\n" + ts + " stdout F two\n" + ts + " stdout P part\n" + ts + " stderr F \n",
		path:        ts + " stdout F after\n",
	} {
		got, err := os.ReadFile(file)
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v, want %q", file, got, err, want)
		}
	}
	if err := l.write("stdout", []byte("x"), now); err == nil {
		t.Error("write() after close() = nil error")
	}
}

// TestServeCtl drives the ctl FIFO through ReopenLog, as crispd does.
func TestServeCtl(t *testing.T) {
	dir := t.TempDir()
	files := layout.New(dir).Container("c1")
	if err := os.MkdirAll(files.Bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "c.log")
	l, err := openCRILog(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	ctl, err := serveCtl(files.CtlFifo(), l, func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ReopenLog(ctx, files, logPath); err != nil {
		t.Fatalf("ReopenLog() = %v", err)
	}
	ctl.Close()
	if err := ReopenLog(ctx, files, ""); !errors.Is(err, ErrNotRunning) {
		t.Errorf("ReopenLog() with the FIFO closed = %v, want ErrNotRunning", err)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	l := layout.New(t.TempDir())
	dir := l.Exits()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	files := l.Container("c1")
	for _, v := range []string{"-1", "137"} {
		if err := writeFileAtomic(files.ExitFile, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "c1" {
		t.Errorf("dir holds %v, want only c1", ents)
	}
	if code, _, ok, err := ReadExit(files); code != 137 || !ok || err != nil {
		t.Errorf("ReadExit() = %d, %v, %v", code, ok, err)
	}
	if isExitFileName("c1.a9Z0x1") {
		t.Error("the temporary file name pattern passes isExitFileName")
	}
	if err := writeFileAtomic(filepath.Join(dir, "missing", "c1"), nil); err == nil {
		t.Error("writeFileAtomic() into a missing dir = nil error")
	}
}

func TestIsSubcontainer(t *testing.T) {
	for _, tc := range []struct {
		annotations string
		want        bool
	}{
		{`{"io.kubernetes.cri.container-type": "container"}`, true},
		{`{"io.kubernetes.cri.container-type": "sandbox"}`, false},
		{`{"io.kubernetes.cri-o.ContainerType": "container"}`, true},
		{`{"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri-o.ContainerType": "container"}`, false},
		{`{}`, false},
	} {
		files := layout.New(t.TempDir()).Container("c1")
		cfg := `{"ociVersion": "1.0.2", "annotations": ` + tc.annotations + `}`
		writeRawSpec(t, files, cfg)
		if got := isSubcontainer(files); got != tc.want {
			t.Errorf("isSubcontainer(%s) = %v, want %v", tc.annotations, got, tc.want)
		}
	}
	if isSubcontainer(layout.New(t.TempDir()).Container("c1")) {
		t.Error("isSubcontainer(no config.json) = true")
	}
}

// TestCreateSubcontainerChecks: Create refuses a runsc sub-container it
// cannot monitor, before it runs anything.
func TestCreateSubcontainerChecks(t *testing.T) {
	h := Handler{Name: "gvisor", Type: TypeRunsc, Path: "/nonexistent", Root: t.TempDir()}
	// bundle writes a sub-container's config.json under a new run dir.
	bundle := func(t *testing.T) (CreateOpts, layout.Layout) {
		l := layout.New(t.TempDir())
		cfg := `{"ociVersion": "1.0.2", "annotations": {"io.kubernetes.cri.container-type": "container"}}`
		writeRawSpec(t, l.Container("c1"), cfg)
		return CreateOpts{ID: "c1", LogPath: filepath.Join(l.RunDir(), "l")}, l
	}
	t.Run("no monitor", func(t *testing.T) {
		c, l := bundle(t)
		_, err := New(h, "/nonexistent", l, nil).Create(context.Background(), c)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "no monitor") {
			t.Errorf("Create() = %v, want ErrUnsupported: no monitor", err)
		}
	})
	h.Monitor = []string{"/nonexistent", "monitor"}
	t.Run("terminal", func(t *testing.T) {
		c, l := bundle(t)
		c.Terminal = true
		if _, err := New(h, "/nonexistent", l, nil).Create(context.Background(), c); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Create(terminal) = %v, want ErrUnsupported", err)
		}
	})
	t.Run("no binary", func(t *testing.T) {
		c, l := bundle(t)
		_, err := New(h, "/nonexistent", l, nil).Create(context.Background(), c)
		if err == nil || !strings.Contains(err.Error(), "start monitor") {
			t.Errorf("Create() = %v, want start monitor to fail", err)
		}
	})
}

// TestMonitorCreateTimeout runs the monitor with a runsc whose create
// hangs: Create must give up with ctx, kill the monitor (and with it the
// runtime, by PDEATHSIG) and clean up. It needs no root.
func TestMonitorCreateTimeout(t *testing.T) {
	r, dir := fakeRuntime(t, TypeRunsc, `case "$*" in *" create "*) exec sleep 31.7;; esac`)
	h := r.Handler()
	h.Monitor = testMonitor(t)
	r = New(h, "/nonexistent", r.files, nil)
	files := r.files.Container("hang2")
	cfg := `{"ociVersion": "1.0.2", "annotations": {"io.kubernetes.cri.container-type": "container"}}`
	writeRawSpec(t, files, cfg)
	c := CreateOpts{ID: files.ID, LogPath: filepath.Join(files.Bundle, "ctr.log")}
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
	pid, err := readPidFile(files.MonitorPidFile())
	if err != nil {
		t.Fatal(err)
	}
	if !waitFor(3*time.Second, func() bool { return !isMonitorOf(pid, c.ID) }) {
		t.Errorf("monitor %d survived a timed-out Create", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if !waitFor(3*time.Second, func() bool { return len(findProcs("sleep\x0031.7")) == 0 }) {
		t.Errorf("the hung runtime survived: %v", findProcs("sleep\x0031.7"))
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "args"))
	if !strings.Contains(string(calls), "delete --force hang2") {
		t.Errorf("last runtime call = %q, want delete --force hang2", calls)
	}
	if code, _, ok, _ := ReadExit(files); ok {
		t.Errorf("exit file %d after a failed Create", code)
	}
}

// writeRawSpec makes the container's bundle and writes cfg as its spec.
func writeRawSpec(t *testing.T, files layout.Container, cfg string) {
	t.Helper()
	if err := os.MkdirAll(files.Bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files.Spec(), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}
