package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// k8s.io/cri-streaming type-asserts (no errors.As) to find exit codes.
var _ utilexec.ExitError = (*ExitError)(nil)

// execEnv is a running container and a started server that knows it.
func execEnv(t *testing.T) (testContainer, runtimeAdapter) {
	t.Helper()
	c := startContainer(t, []string{"sleep", "1000"}, ctrOpts{})
	f := newFake()
	f.add(c)
	return c, runtimeAdapter{newTestServer(t, f)}
}

func TestExecPipes(t *testing.T) {
	c, rt := execEnv(t)
	ctx := testCtx(t)

	tests := []struct {
		name             string
		cmd              []string
		stdin            io.Reader
		wantOut, wantErr string
		wantCode         int // -1: any error that is not an exit code
		errContains      string
	}{
		{name: "stdin and exit code", cmd: []string{"sh", "-c", "read x; echo got $x; echo oops >&2; exit 3"},
			stdin: strings.NewReader("hi\n"), wantOut: "got hi\n", wantErr: "oops\n", wantCode: 3},
		{name: "success", cmd: []string{"echo", "ok"}, wantOut: "ok\n"},
		{name: "stdin to EOF", cmd: []string{"cat"}, stdin: strings.NewReader("a\nb"), wantOut: "a\nb"},
		{name: "not found", cmd: []string{"no-such-cmd"}, wantCode: 255, errContains: "no-such-cmd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut syncBuffer
			err := rt.Exec(ctx, c.id, tt.cmd, tt.stdin, &out, &errOut, false, nil)
			code := 0
			if err != nil {
				ee, ok := err.(utilexec.ExitError)
				if !ok {
					t.Fatalf("Exec() = %v, want an exit status %d", err, tt.wantCode)
				}
				code = ee.ExitStatus()
			}
			if code != tt.wantCode {
				t.Errorf("Exec() exit code = %d (%v), want %d", code, err, tt.wantCode)
			}
			if tt.errContains == "" && (out.String() != tt.wantOut || errOut.String() != tt.wantErr) {
				t.Errorf("Exec() stdout, stderr = %q, %q, want %q, %q", out.String(), errOut.String(), tt.wantOut, tt.wantErr)
			}
			if !strings.Contains(errOut.String(), tt.errContains) {
				t.Errorf("Exec() stderr = %q, want it to mention %q", errOut.String(), tt.errContains)
			}
			if !out.closed || !errOut.closed {
				t.Errorf("Exec() left stdout (closed %v) or stderr (closed %v) open", out.closed, errOut.closed)
			}
		})
	}

	t.Run("unknown container", func(t *testing.T) {
		var out syncBuffer
		if err := rt.Exec(ctx, "nope", []string{"true"}, nil, &out, nil, false, nil); err == nil {
			t.Error("Exec(unknown container) = nil, want an error")
		}
	})
	t.Run("no command", func(t *testing.T) {
		if err := rt.Exec(ctx, c.id, nil, nil, &syncBuffer{}, nil, false, nil); err == nil {
			t.Error("Exec(no command) = nil, want an error")
		}
	})
}

// TestExecCancel checks that a session whose context ends kills its
// process and returns, also with the client's stdin still open.
func TestExecCancel(t *testing.T) {
	c, rt := execEnv(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	inR, inW := io.Pipe()
	defer inW.Close()
	done := make(chan error, 1)
	var out syncBuffer
	go func() {
		done <- rt.Exec(ctx, c.id, []string{"sh", "-c", "echo started; exec sleep 999"}, inR, &out, nil, false, nil)
	}()
	waitOutput(t, &out, "started")
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Exec() after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Exec() did not return after cancel")
	}
	var ps syncBuffer
	err := rt.Exec(testCtx(t), c.id, []string{"sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"}, nil, &ps, nil, false, nil)
	if err != nil || strings.Contains(ps.String(), "sleep 999") {
		t.Errorf("processes after cancel = %q, %v; want no sleep 999", ps.String(), err)
	}
}

func TestExecTTY(t *testing.T) {
	c, rt := execEnv(t)
	ctx := testCtx(t)
	inR, inW := io.Pipe()
	defer inW.Close()
	resize := make(chan remotecommand.TerminalSize, 1)
	resize <- remotecommand.TerminalSize{Width: 100, Height: 40}
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		script := `stty size; tty; while read l; do stty size; [ "$l" = q ] && exit 5; done`
		done <- rt.Exec(ctx, c.id, []string{"sh", "-c", script}, inR, &out, nil, true, resize)
	}()
	waitOutput(t, &out, "/dev/pts/")
	// The first size is there when the process starts.
	if got := out.String(); !strings.HasPrefix(got, "40 100\r\n") {
		t.Errorf("tty output %q, want it to start with the first size, 40 100", got)
	}
	// Later sizes reach the container's terminal through the runtime,
	// asynchronously: ask again until they show.
	for _, size := range []remotecommand.TerminalSize{{Width: 90, Height: 30}, {Width: 132, Height: 43}} {
		resize <- size
		want := fmt.Sprintf("%d %d", size.Height, size.Width)
		if !waitFor(20*time.Second, func() bool {
			_, _ = inW.Write([]byte("x\n"))
			time.Sleep(50 * time.Millisecond)
			return strings.Contains(out.String(), want)
		}) {
			t.Fatalf("tty output %q never showed size %q", out.String(), want)
		}
	}
	if _, err := inW.Write([]byte("q\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		ee, ok := err.(utilexec.ExitError)
		if !ok || ee.ExitStatus() != 5 {
			t.Errorf("Exec(tty) = %v, want exit status 5", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Exec(tty) did not return")
	}
}
