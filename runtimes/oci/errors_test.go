package oci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crisp-cri/crisp/runtimes/layout"
)

// fakeRuntime writes a shell script standing in for the runtime binary
// (the go-runc test trick): it records its arguments in <dir>/args and its
// stdin in <dir>/stdin, then runs body. It needs no root.
func fakeRuntime(t *testing.T, typ, body string) (*Runtime, string) {
	t.Helper()
	dir := t.TempDir()
	script := fmt.Sprintf("#!/bin/sh\necho \"$*\" > %s/args\ncat > %s/stdin\n%s\n", dir, dir, body)
	path := filepath.Join(dir, "runtime")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	h := Handler{Name: "fake-" + typ, Type: typ, Path: path, Root: filepath.Join(dir, "root")}
	if typ == TypeRunsc {
		h.ExtraArgs = []string{"--network=none"}
	}
	if err := os.MkdirAll(h.Root, 0o700); err != nil {
		t.Fatal(err)
	}
	return New(h, "/nonexistent/conmon", layout.New(filepath.Join(dir, "run")), nil), dir
}

func fail(code int, stderr string) string {
	return fmt.Sprintf("printf '%%s\\n' '%s' >&2\nexit %d", strings.ReplaceAll(stderr, "'", `'\''`), code)
}

const (
	runcNotExist  = `time="2026-11-25T23:33:43Z" level=error msg="container does not exist"`
	runcNotRun    = `time="2026-11-25T23:33:54Z" level=error msg="container not running"`
	runcStopped   = `time="2026-11-25T23:33:54Z" level=error msg="cannot start a container that has stopped"`
	runcEventsNot = `time="2026-11-25T23:33:54Z" level=error msg="container with id x is not running"`
)

func TestErrorTranslation(t *testing.T) {
	tests := []struct {
		name     string
		typ      string
		body     string
		call     func(context.Context, *Runtime) error
		wantArgs string // after "--root <root>"
		wantIs   error  // nil: neither sentinel
		wantExit int
		wantText string
	}{
		{"runc state unknown", TypeRunc, fail(1, runcNotExist),
			func(ctx context.Context, r *Runtime) error { _, err := r.State(ctx, "x"); return err },
			"state x", ErrNotFound, 1, "container does not exist"},
		{"runsc state unknown", TypeRunsc, fail(128, "loading container: file does not exist"),
			func(ctx context.Context, r *Runtime) error { _, err := r.State(ctx, "x"); return err },
			"--network=none state x", ErrNotFound, 128, "loading container"},
		{"runc kill stopped", TypeRunc, fail(1, runcNotRun),
			func(ctx context.Context, r *Runtime) error { return r.Kill(ctx, "x", syscall.SIGKILL, true) },
			"kill --all x 9", ErrNotRunning, 1, "container not running"},
		{"runsc kill stopped sandbox", TypeRunsc, fail(128, "sandbox is not running"),
			func(ctx context.Context, r *Runtime) error { return r.Kill(ctx, "x", syscall.SIGTERM, false) },
			"--network=none kill x 15", ErrNotRunning, 128, "sandbox is not running"},
		{"runsc kill dead sandbox", TypeRunsc, fail(128, "connecting to control server at PID 12669: connection refused"),
			func(ctx context.Context, r *Runtime) error { return r.Kill(ctx, "x", syscall.SIGKILL, false) },
			"--network=none kill x 9", ErrNotRunning, 128, "connection refused"},
		{"runsc kill unknown", TypeRunsc, fail(128, "loading container: file does not exist"),
			func(ctx context.Context, r *Runtime) error { return r.Kill(ctx, "x", syscall.SIGKILL, false) },
			"--network=none kill x 9", ErrNotFound, 128, ""},
		{"runc start stopped", TypeRunc, fail(1, runcStopped),
			func(ctx context.Context, r *Runtime) error { return r.Start(ctx, "x") },
			"start x", ErrNotRunning, 1, "has stopped"},
		{"runsc start stopped", TypeRunsc, fail(128, `starting container: cannot start container "x" in state stopped`),
			func(ctx context.Context, r *Runtime) error { return r.Start(ctx, "x") },
			"--network=none start x", ErrNotRunning, 128, "in state stopped"},
		{"runc delete unknown", TypeRunc, fail(1, runcNotExist),
			func(ctx context.Context, r *Runtime) error { return r.Delete(ctx, "x", false) },
			"delete x", ErrNotFound, 1, ""},
		{"runsc delete unknown", TypeRunsc, fail(128, `loading container "x": file does not exist`),
			func(ctx context.Context, r *Runtime) error { return r.Delete(ctx, "x", false) },
			"--network=none delete x", ErrNotFound, 128, ""},
		{"runsc 2026 delete removed", TypeRunsc,
			fail(128, `destroying container: stopping container: destroying container "x": destroying container "x": container "x" not found`),
			func(ctx context.Context, r *Runtime) error { return r.Delete(ctx, "x", false) },
			"--network=none delete x", ErrNotFound, 128, ""},
		{"runc update stopped", TypeRunc, fail(1, runcNotRun),
			func(ctx context.Context, r *Runtime) error {
				lim := int64(1 << 20)
				return r.Update(ctx, "x", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &lim}})
			},
			"update --resources=- x", ErrNotRunning, 1, ""},
		{"runc stats stopped", TypeRunc, fail(1, runcEventsNot),
			func(ctx context.Context, r *Runtime) error { _, err := r.Stats(ctx, "x"); return err },
			"events --stats x", ErrNotRunning, 1, "is not running"},
		{"runsc stats unknown", TypeRunsc, fail(128, "loading sandbox: file does not exist"),
			func(ctx context.Context, r *Runtime) error { _, err := r.Stats(ctx, "x"); return err },
			"--network=none events --stats x", ErrNotFound, 128, ""},
		{"other failure", TypeRunc, fail(2, `time="t" level=error msg="something \"odd\" broke"`),
			func(ctx context.Context, r *Runtime) error { return r.Start(ctx, "x") },
			"start x", nil, 2, `something "odd" broke`},
		{"failure without output", TypeRunsc, "exit 128",
			func(ctx context.Context, r *Runtime) error { return r.Start(ctx, "x") },
			"--network=none start x", nil, 128, "exit status 128"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, dir := fakeRuntime(t, tt.typ, tt.body)
			err := tt.call(context.Background(), r)
			if err == nil {
				t.Fatal("err = nil, want an error")
			}
			for _, s := range []error{ErrNotFound, ErrNotRunning} {
				if got, want := errors.Is(err, s), s == tt.wantIs; got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", err, s, got, want)
				}
			}
			var ee *runc.ExitError
			if !errors.As(err, &ee) || ee.Status != tt.wantExit {
				t.Errorf("errors.As(%v, *runc.ExitError) = %v (%v), want status %d", err, ee, errors.As(err, &ee), tt.wantExit)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not contain %q", err, tt.wantText)
			}
			args, _ := os.ReadFile(filepath.Join(dir, "args"))
			if got, want := strings.TrimSpace(string(args)), "--root "+r.Handler().Root+" "+tt.wantArgs; got != want {
				t.Errorf("runtime args = %q, want %q", got, want)
			}
		})
	}
}

func TestTranslatePassesOtherErrors(t *testing.T) {
	if err := translate(nil, "container does not exist"); err != nil {
		t.Errorf("translate(nil) = %v, want nil", err)
	}
	base := errors.New("exec: no such file")
	err := translate(base, "")
	if !errors.Is(err, base) || errors.Is(err, ErrNotFound) {
		t.Errorf("translate(%v) = %v, want it unchanged", base, err)
	}
	// Without an exit status the text is not trusted.
	err = translate(base, "container does not exist")
	if errors.Is(err, ErrNotFound) || !errors.Is(err, base) {
		t.Errorf("translate(%v, not-exist text) = %v, want no ErrNotFound", base, err)
	}
}

func TestRuntimeMessage(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"runc logrus", runcNotExist + "\n", "container does not exist"},
		{"two lines", runcNotRun + "\n" + runcNotExist, "container not running; container does not exist"},
		{"plain", "  loading container: file does not exist\n", "loading container: file does not exist"},
		{"unquoted msg", `time="t" level=error msg=oops other=1`, "oops"},
		{"empty", "\n \n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := runtimeMessage(tt.in); got != tt.want {
				t.Errorf("runtimeMessage(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestFakeRuntimeCalls(t *testing.T) {
	ctx := context.Background()
	t.Run("state parses", func(t *testing.T) {
		r, _ := fakeRuntime(t, TypeRunc, `echo '{"id":"x","pid":42,"status":"running","bundle":"/b","created":"2026-11-25T23:33:43Z"}'`)
		st, err := r.State(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		if st.ID != "x" || st.PID != 42 || st.Status != "running" || st.Bundle != "/b" || st.Created.IsZero() {
			t.Errorf("State() = %+v", st)
		}
	})
	t.Run("list null", func(t *testing.T) {
		r, _ := fakeRuntime(t, TypeRunc, `echo null`)
		got, err := r.List(ctx)
		if err != nil || len(got) != 0 {
			t.Errorf("List() = %v, %v, want empty", got, err)
		}
	})
	t.Run("list missing root", func(t *testing.T) {
		r, dir := fakeRuntime(t, TypeRunc, `exit 1`)
		if err := os.RemoveAll(r.Handler().Root); err != nil {
			t.Fatal(err)
		}
		got, err := r.List(ctx)
		if err != nil || len(got) != 0 {
			t.Errorf("List() = %v, %v, want empty", got, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "args")); err == nil {
			t.Error("runtime ran for a missing root")
		}
	})
	t.Run("update sends resources", func(t *testing.T) {
		r, dir := fakeRuntime(t, TypeRunc, `exit 0`)
		lim := int64(64 << 20)
		if err := r.Update(ctx, "x", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &lim}}); err != nil {
			t.Fatal(err)
		}
		stdin, _ := os.ReadFile(filepath.Join(dir, "stdin"))
		if want := `{"memory":{"limit":67108864}}`; string(stdin) != want {
			t.Errorf("update stdin = %s, want %s", stdin, want)
		}
	})
	t.Run("runsc update unsupported", func(t *testing.T) {
		r, dir := fakeRuntime(t, TypeRunsc, `exit 0`)
		err := r.Update(ctx, "x", &specs.LinuxResources{})
		if !errors.Is(err, ErrUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("Update() = %v, want ErrUnsupported", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "args")); err == nil {
			t.Error("runsc ran for update")
		}
	})
	t.Run("force delete of unknown id", func(t *testing.T) {
		// runc: state fails, delete --force succeeds.
		r, dir := fakeRuntime(t, TypeRunc, `case "$*" in *" state "*) `+fail(1, runcNotExist)+`;; esac
echo "$*" >> `+"\"$(dirname \"$0\")/all\"")
		err := r.Delete(ctx, "x", true)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Delete(force) = %v, want ErrNotFound", err)
		}
		all, _ := os.ReadFile(filepath.Join(dir, "all"))
		if !strings.Contains(string(all), "delete --force x") {
			t.Errorf("runtime calls = %q, want a delete --force", all)
		}
	})
	t.Run("stats", func(t *testing.T) {
		r, _ := fakeRuntime(t, TypeRunc, `echo '{"type":"stats","id":"x","data":{"cpu":{"usage":{"total":5000}},"memory":{"usage":{"usage":1000},"raw":{"total_inactive_file":300}},"pids":{"current":2}}}'`)
		st, err := r.Stats(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		if st.CPUUsageNanos != 5000 || st.MemoryUsageBytes != 1000 || st.MemoryWorkingSetBytes != 700 || st.Pids != 2 {
			t.Errorf("Stats() = %+v", st)
		}
	})
}
