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
)

// attachEnv starts a container with o running script and a server that
// knows it.
func attachEnv(t *testing.T, script string, o ctrOpts) (testContainer, runtimeAdapter) {
	t.Helper()
	c := startContainer(t, []string{"sh", "-c", script}, o)
	f := newFake()
	f.add(c)
	return c, runtimeAdapter{newTestServer(t, f)}
}

// wait returns what done delivers, failing the test after 20 seconds.
func wait(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

func TestAttach(t *testing.T) {
	c, rt := attachEnv(t, `while read l; do echo "echo:$l"; echo "err:$l" >&2; done`, ctrOpts{stdin: true})
	ctx := testCtx(t)

	// Twice: ending the first session (the client's stdin closes) must
	// leave the container and its stdin alone.
	for _, word := range []string{"hello", "again"} {
		inR, inW := io.Pipe()
		var out, errOut syncBuffer
		done := make(chan error, 1)
		go func() { done <- rt.Attach(ctx, c.id, inR, &out, &errOut, false, nil) }()
		if _, err := inW.Write([]byte(word + "\n")); err != nil {
			t.Fatal(err)
		}
		waitOutput(t, &out, "echo:"+word+"\n")
		waitOutput(t, &errOut, "err:"+word+"\n")
		inW.Close()
		if err := wait(t, done, "Attach() after stdin EOF"); err != nil {
			t.Errorf("Attach() after stdin EOF = %v, want nil", err)
		}
		if strings.Contains(out.String(), "err:") || strings.Contains(errOut.String(), "echo:") {
			t.Errorf("Attach() mixed streams: stdout %q, stderr %q", out.String(), errOut.String())
		}
		if !out.closed || !errOut.closed {
			t.Error("Attach() left its output streams open")
		}
	}

	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- rt.Attach(ctx, c.id, nil, &syncBuffer{}, nil, false, nil) }()
		time.Sleep(100 * time.Millisecond)
		cancel()
		if err := wait(t, done, "Attach() after cancel"); !errors.Is(err, context.Canceled) {
			t.Errorf("Attach() after cancel = %v, want context.Canceled", err)
		}
	})
	t.Run("unknown container", func(t *testing.T) {
		if err := rt.Attach(ctx, "nope", nil, &syncBuffer{}, nil, false, nil); err == nil {
			t.Error("Attach(unknown container) = nil, want an error")
		}
	})
}

// TestAttachStdinOnce: the client's EOF closes the container's stdin, and
// the session lasts until the container has said its last and exited.
func TestAttachStdinOnce(t *testing.T) {
	c, rt := attachEnv(t, `read l; sleep 1; echo "bye:$l"`, ctrOpts{stdin: true, stdinOnce: true})
	var out syncBuffer
	err := rt.Attach(testCtx(t), c.id, strings.NewReader("x\n"), &out, nil, false, nil)
	if err != nil || out.String() != "bye:x\n" {
		t.Errorf("Attach() = %q, %v, want %q, nil", out.String(), err, "bye:x\n")
	}
}

func TestAttachTTY(t *testing.T) {
	c, rt := attachEnv(t, `while read l; do stty size; done`, ctrOpts{tty: true, stdin: true})
	inR, inW := io.Pipe()
	defer inW.Close()
	resize := make(chan remotecommand.TerminalSize, 1)
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- rt.Attach(testCtx(t), c.id, inR, &out, nil, true, resize) }()
	for _, size := range []remotecommand.TerminalSize{{Width: 77, Height: 33}, {Width: 120, Height: 50}} {
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
	// ^D ends the shell's read; the container exits and so does the
	// session.
	if _, err := inW.Write([]byte{4}); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, done, "Attach(tty) after the container exits"); err != nil {
		t.Errorf("Attach(tty) = %v, want nil", err)
	}
}
