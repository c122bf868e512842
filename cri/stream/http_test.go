package stream

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// The tests here go through HTTP with a SPDY client, as kubelet and
// crictl do (client-go's remotecommand is not in crisp's module graph).

// dialSPDY upgrades a connection to streamURL with protocol.
func dialSPDY(t *testing.T, streamURL, protocol string) httpstream.Connection {
	t.Helper()
	u, err := url.Parse(streamURL)
	if err != nil {
		t.Fatal(err)
	}
	if h := u.Hostname(); h != "127.0.0.1" {
		t.Fatalf("stream URL %s is on %s, want 127.0.0.1", streamURL, h)
	}
	rt, err := spdy.NewRoundTripperWithConfig(spdy.RoundTripperConfig{
		Proxier: func(*http.Request) (*url.URL, error) { return nil, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, streamURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(httpstream.HeaderProtocolVersion, protocol)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("upgrade %s: %v", streamURL, err)
	}
	conn, err := rt.NewConnection(resp)
	if err != nil {
		t.Fatalf("upgrade %s: %v", streamURL, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// stream opens a client stream with the given header pairs.
func stream(t *testing.T, conn httpstream.Connection, kv ...string) httpstream.Stream {
	t.Helper()
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	s, err := conn.CreateStream(h)
	if err != nil {
		t.Fatalf("create stream %v: %v", kv, err)
	}
	return s
}

// execStreams are a v4 exec client's streams.
type execStreams struct {
	errs, stdin, stdout, stderr httpstream.Stream
}

// startExec asks s for an exec URL and opens the streams of a
// non-terminal session with stdin, stdout and stderr.
func startExec(t *testing.T, s *Server, containerID string, cmd ...string) (httpstream.Connection, execStreams) {
	t.Helper()
	resp, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: containerID, Cmd: cmd, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatalf("GetExec() = %v", err)
	}
	conn := dialSPDY(t, resp.Url, remotecommand.StreamProtocolV4Name)
	const st = remotecommand.StreamType
	return conn, execStreams{
		errs:   stream(t, conn, st, remotecommand.StreamTypeError),
		stdin:  stream(t, conn, st, remotecommand.StreamTypeStdin),
		stdout: stream(t, conn, st, remotecommand.StreamTypeStdout),
		stderr: stream(t, conn, st, remotecommand.StreamTypeStderr),
	}
}

// readStatus reads the status the server writes on the error stream and
// returns the exit code it names (0 for success).
func readStatus(t *testing.T, errs io.Reader) int {
	t.Helper()
	data, err := io.ReadAll(errs)
	if err != nil {
		t.Fatalf("read error stream: %v", err)
	}
	var st struct {
		Status, Reason, Message string
		Details                 struct {
			Causes []struct{ Reason, Message string }
		}
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("error stream %q: %v", data, err)
	}
	if st.Status == "Success" {
		return 0
	}
	if st.Reason == remotecommand.NonZeroExitCodeReason && len(st.Details.Causes) == 1 {
		var code int
		if err := json.Unmarshal([]byte(st.Details.Causes[0].Message), &code); err == nil {
			return code
		}
	}
	t.Fatalf("error stream %q: no exit code", data)
	return -1
}

func TestHTTPExec(t *testing.T) {
	c := startContainer(t, []string{"sleep", "1000"}, ctrOpts{})
	f := newFake()
	f.add(c)
	s := newTestServer(t, f)

	_, es := startExec(t, s, c.id, "sh", "-c", "read x; echo got $x; echo oops >&2; exit 3")
	if _, err := es.stdin.Write([]byte("hi\n")); err != nil {
		t.Fatal(err)
	}
	es.stdin.Close()
	out, _ := io.ReadAll(es.stdout)
	errOut, _ := io.ReadAll(es.stderr)
	if code := readStatus(t, es.errs); string(out) != "got hi\n" || string(errOut) != "oops\n" || code != 3 {
		t.Errorf("exec over SPDY = %q, %q, exit %d, want %q, %q, exit 3", out, errOut, code, "got hi\n", "oops\n")
	}

	t.Run("token used once", func(t *testing.T) {
		resp, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: c.id, Cmd: []string{"true"}, Stdout: true})
		if err != nil {
			t.Fatal(err)
		}
		dialSPDY(t, resp.Url, remotecommand.StreamProtocolV4Name) // consumes the token
		r, err := http.Get(resp.Url)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusNotFound {
			t.Errorf("second use of an exec URL: HTTP %d, want 404", r.StatusCode)
		}
	})

	// A client that goes away takes its process with it.
	t.Run("client gone", func(t *testing.T) {
		conn, es := startExec(t, s, c.id, "sh", "-c", "echo started; exec sleep 998")
		buf := make([]byte, 8)
		if _, err := io.ReadFull(es.stdout, buf); err != nil || string(buf) != "started\n" {
			t.Fatalf("read stdout = %q, %v", buf, err)
		}
		conn.Close()
		waitNoProcess(t, s, c.id, "sleep 998")
	})

	// Stop ends every session, and kills its process.
	t.Run("stop", func(t *testing.T) {
		_, es := startExec(t, s, c.id, "sh", "-c", "echo started; exec sleep 997")
		buf := make([]byte, 8)
		if _, err := io.ReadFull(es.stdout, buf); err != nil {
			t.Fatalf("read stdout = %q, %v", buf, err)
		}
		stopped := make(chan error, 1)
		go func() { stopped <- s.Stop() }()
		if err := wait(t, stopped, "Stop() with a session"); err != nil {
			t.Errorf("Stop() = %v", err)
		}
		s2 := newTestServer(t, f)
		waitNoProcess(t, s2, c.id, "sleep 997")
		if _, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: c.id, Cmd: []string{"true"}, Stdout: true}); !errors.Is(err, ErrNotServing) {
			t.Errorf("GetExec() after Stop = %v, want ErrNotServing", err)
		}
	})
}

// waitNoProcess waits until no process in the container has cmdline.
func waitNoProcess(t *testing.T, s *Server, containerID, cmdline string) {
	t.Helper()
	var ps syncBuffer
	if !waitFor(20*time.Second, func() bool {
		ps = syncBuffer{}
		err := runtimeAdapter{s}.Exec(testCtx(t), containerID, []string{"sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"}, nil, &ps, nil, false, nil)
		return err == nil && !strings.Contains(ps.String(), cmdline)
	}) {
		t.Errorf("processes = %q, still running %q", ps.String(), cmdline)
	}
}

func TestHTTPPortForward(t *testing.T) {
	netns := newNetNS(t)
	startContainer(t, []string{"nc", "-ll", "-p", "8080", "-e", "echo", "hello"}, ctrOpts{netns: netns})
	f := newFake()
	f.netns["pod1"] = netns
	s := newTestServer(t, f)

	resp, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "pod1", Port: []int32{8080}})
	if err != nil {
		t.Fatalf("GetPortForward() = %v", err)
	}
	conn := dialSPDY(t, resp.Url, portforward.ProtocolV1Name)
	var got string
	// One request per try (the listener may not be up yet).
	for i := 0; i < 100 && got == ""; i++ {
		id := time.Now().Format("150405.000000000")
		errs := stream(t, conn, portforward.StreamType, portforward.StreamTypeError, portforward.PortHeader, "8080", portforward.PortForwardRequestIDHeader, id)
		errs.Close()
		data := stream(t, conn, portforward.StreamType, portforward.StreamTypeData, portforward.PortHeader, "8080", portforward.PortForwardRequestIDHeader, id)
		b, _ := io.ReadAll(data)
		got = string(b)
		if got == "" {
			msg, _ := io.ReadAll(errs)
			t.Logf("try %d: %s", i, msg)
			time.Sleep(100 * time.Millisecond)
		}
		data.Close()
	}
	if got != "hello\n" {
		t.Errorf("port forward over SPDY = %q, want hello", got)
	}
}

func TestNew(t *testing.T) {
	for _, addr := range []string{"", "127.0.0.1:0", "localhost:0", "[::1]:0"} {
		if _, err := New(Config{Addr: addr}, newFake(), nil); err != nil {
			t.Errorf("New(%q) = %v, want nil", addr, err)
		}
	}
	for _, addr := range []string{"0.0.0.0:0", ":10350", "10.0.0.1:1", "example.com:1", "nonsense"} {
		if _, err := New(Config{Addr: addr}, newFake(), nil); err == nil {
			t.Errorf("New(%q) = nil, want an error (not loopback)", addr)
		}
	}
	s, err := New(Config{}, newFake(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAttach(&runtimeapi.AttachRequest{ContainerId: "x", Stdout: true}); !errors.Is(err, ErrNotServing) {
		t.Errorf("GetAttach() before Start = %v, want ErrNotServing", err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	resp, err := s.GetAttach(&runtimeapi.AttachRequest{ContainerId: "x", Stdout: true})
	if err != nil || !strings.HasPrefix(resp.Url, "http://"+s.Addr()+"/attach/") {
		t.Errorf("GetAttach() = %v, %v, want a URL on %s", resp, err, s.Addr())
	}
	if _, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "x", Cmd: []string{"sh"}, Tty: true, Stderr: true}); err == nil {
		t.Error("GetExec(tty and stderr) = nil, want an error")
	}
}
