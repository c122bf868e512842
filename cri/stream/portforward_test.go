package stream

import (
	"io"
	"strings"
	"testing"
	"time"
)

// pipeStream is the server's side of a port-forward stream: it reads what
// the client writes, and Close ends only its writing side, as a SPDY
// stream's Close does.
type pipeStream struct {
	r *io.PipeReader
	w *io.PipeWriter
}

func (p pipeStream) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p pipeStream) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p pipeStream) Close() error                { return p.w.Close() }

// newStreamPair returns the server's stream and the client's ends.
func newStreamPair() (srv pipeStream, fromSrv *io.PipeReader, toSrv *io.PipeWriter) {
	c2sR, c2sW := io.Pipe()
	s2cR, s2cW := io.Pipe()
	return pipeStream{r: c2sR, w: s2cW}, s2cR, c2sW
}

// portForwardEnv starts a pod network namespace with a container serving
// "hello" on 8080, echoing on 8081 and silent on 8082, and a server that
// knows the pod.
func portForwardEnv(t *testing.T) runtimeAdapter {
	t.Helper()
	netns := newNetNS(t)
	startContainer(t, []string{"sh", "-c", "nc -ll -p 8080 -e echo hello & nc -ll -p 8082 -e sleep 1000 & exec nc -ll -p 8081 -e cat"}, ctrOpts{netns: netns})
	f := newFake()
	f.netns["pod1"] = netns
	return runtimeAdapter{newTestServer(t, f)}
}

// forward runs one port forward with the client sending send (then
// closing its side) and returns what the client received.
func forward(rt runtimeAdapter, t *testing.T, pod string, port int32, send string) (string, error) {
	t.Helper()
	srv, fromSrv, toSrv := newStreamPair()
	done := make(chan error, 1)
	go func() {
		err := rt.PortForward(testCtx(t), pod, port, srv)
		srv.Close() // as k8s.io/cri-streaming does after PortForward
		done <- err
	}()
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(fromSrv)
		got <- string(b)
	}()
	if send != "" { // an empty Write on a pipe waits for a reader
		_, _ = io.WriteString(toSrv, send)
	}
	toSrv.Close()
	return <-got, wait(t, done, "PortForward()")
}

func TestPortForward(t *testing.T) {
	rt := portForwardEnv(t)
	// The listeners start with the container: retry until they answer.
	var got string
	var err error
	if !waitFor(20*time.Second, func() bool {
		got, err = forward(rt, t, "pod1", 8081, "")
		return err == nil
	}) {
		t.Fatalf("PortForward() to 8081 never connected: %v", err)
	}

	tests := []struct {
		name string
		port int32
		send string
		want string
	}{
		{name: "server speaks", port: 8080, want: "hello\n"},
		{name: "client speaks, server echoes", port: 8081, send: "ping\n", want: "ping\n"},
		{name: "bigger than a buffer", port: 8081, send: strings.Repeat("0123456789", 50000), want: strings.Repeat("0123456789", 50000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err = forward(rt, t, "pod1", tt.port, tt.send)
			if err != nil || got != tt.want {
				t.Errorf("PortForward(%d) = %.40q (%d bytes), %v, want %.40q (%d bytes), nil", tt.port, got, len(got), err, tt.want, len(tt.want))
			}
		})
	}
	t.Run("silent pod", func(t *testing.T) {
		// The client has closed its side and the pod's side neither
		// speaks nor closes: the forward ends after a grace period.
		start := time.Now()
		got, err := forward(rt, t, "pod1", 8082, "x")
		if err != nil || got != "" || time.Since(start) < portForwardLinger {
			t.Errorf("PortForward(silent) = %q, %v after %v, want nothing, nil after %v", got, err, time.Since(start), portForwardLinger)
		}
	})
	t.Run("closed port", func(t *testing.T) {
		if _, err := forward(rt, t, "pod1", 8083, ""); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("PortForward(closed port) = %v, want connection refused", err)
		}
	})
	t.Run("unknown pod", func(t *testing.T) {
		if _, err := forward(rt, t, "nope", 8080, ""); err == nil {
			t.Error("PortForward(unknown pod) = nil, want an error")
		}
	})
}
