package stream

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// crictlBin is the crictl v1.37.0 that crisp's e2e tests use.
const crictlBin = "../../bin/crictl"

// criFake is the smallest CRI runtime service crictl's streaming commands
// need: the three URL calls, answered by the Server as package cri will.
type criFake struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	s *Server
}

// imageFake answers the one image call crictl makes to check the endpoint.
type imageFake struct {
	runtimeapi.UnimplementedImageServiceServer
}

func (imageFake) ImageFsInfo(context.Context, *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	return &runtimeapi.ImageFsInfoResponse{}, nil
}

func (f criFake) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: "crisp-stream-test", RuntimeVersion: "0", RuntimeApiVersion: "v1"}, nil
}

func (f criFake) Exec(_ context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	return f.s.GetExec(req)
}

func (f criFake) Attach(_ context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	return f.s.GetAttach(req)
}

func (f criFake) PortForward(_ context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	return f.s.GetPortForward(req)
}

// crictl returns a command running crictl against a CRI socket served by
// criFake for s.
func crictlFor(t *testing.T, s *Server) func(args ...string) *exec.Cmd {
	t.Helper()
	bin, err := filepath.Abs(crictlBin)
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		skipOrFail(t, "crictl test needs %s: %v", crictlBin, err)
	}
	sock := filepath.Join(t.TempDir(), "cri.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(g, criFake{s: s})
	// crictl exec checks that the endpoint serves images too.
	runtimeapi.RegisterImageServiceServer(g, imageFake{})
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	cfg := filepath.Join(t.TempDir(), "crictl.yaml")
	if err := os.WriteFile(cfg, []byte("runtime-endpoint: unix://"+sock+"\ntimeout: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(args ...string) *exec.Cmd {
		ctx := testCtx(t)
		return exec.CommandContext(ctx, bin, append([]string{"--config", cfg}, args...)...)
	}
}

func TestCrictl(t *testing.T) {
	c := startContainer(t, []string{"sh", "-c", `while read l; do echo "echo:$l"; done`}, ctrOpts{stdin: true})
	netns := newNetNS(t)
	startContainer(t, []string{"nc", "-ll", "-p", "8080", "-e", "echo", "hello"}, ctrOpts{netns: netns})
	f := newFake()
	f.add(c)
	f.netns["pod1"] = netns
	crictl := crictlFor(t, newTestServer(t, f))

	// SPDY, crictl's default transport and the kubelet's. crictl's
	// --transport websocket asks for v5.channel.k8s.io only, which
	// k8s.io/cri-streaming v0.37.2 does not serve (403).
	t.Run("exec", func(t *testing.T) {
		cmd := crictl("exec", "-i", c.id, "sh", "-c", "read x; echo got $x; echo oops >&2; exit 3")
		cmd.Stdin = strings.NewReader("hi\n")
		var stdout, stderr syncBuffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		// crictl exits 1 and names the command's exit code.
		if err == nil || stdout.String() != "got hi\n" || !strings.HasPrefix(stderr.String(), "oops\n") ||
			!strings.Contains(stderr.String(), "exit code 3") {
			t.Errorf("crictl exec = %q, %q, %v, want %q, oops and exit code 3", stdout.String(), stderr.String(), err, "got hi\n")
		}
	})

	t.Run("exec tty", func(t *testing.T) {
		// crictl -t wants a terminal: give it one of ours, 25x91.
		master, slave, err := openPty()
		if err != nil {
			t.Fatal(err)
		}
		defer master.Close()
		if err := setWinsize(master, 25, 91); err != nil {
			t.Fatal(err)
		}
		cmd := crictl("exec", "-it", c.id, "sh", "-c", "stty size; exit 4")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		err = cmd.Start()
		slave.Close()
		if err != nil {
			t.Fatal(err)
		}
		var out syncBuffer
		copied := make(chan struct{})
		go func() {
			_, _ = io.Copy(&out, ptyReader{master})
			close(copied)
		}()
		err = cmd.Wait()
		<-copied
		if err == nil || !strings.Contains(out.String(), "25 91") || !strings.Contains(out.String(), "exit code 4") {
			t.Errorf("crictl exec -it = %q, %v, want size 25 91 and exit code 4", out.String(), err)
		}
	})

	t.Run("attach", func(t *testing.T) {
		cmd := crictl("attach", "-i", c.id)
		inW, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		outR, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr syncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(outR)
		// crictl connects asynchronously: repeat until the echo shows.
		got := make(chan string, 1)
		go func() {
			for lines.Scan() {
				if l := lines.Text(); strings.HasPrefix(l, "echo:") {
					got <- l
					return
				}
			}
			close(got)
		}()
		fmt.Fprintln(inW, "hello")
		select {
		case l := <-got:
			if l != "echo:hello" {
				t.Errorf("crictl attach printed %q, want echo:hello", l)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("crictl attach printed nothing (stderr %q)", stderr.String())
		}
		inW.Close()
		go func() { _, _ = io.Copy(io.Discard, outR) }()
		if err := cmd.Wait(); err != nil {
			t.Errorf("crictl attach after stdin EOF = %v, stderr %q", err, stderr.String())
		}
	})

	t.Run("port-forward", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		local := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		cmd := crictl("port-forward", "pod1", fmt.Sprintf("%d:8080", local))
		var out syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}()
		var got string
		waitFor(20*time.Second, func() bool {
			conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", local))
			if err != nil {
				return false
			}
			defer conn.Close()
			b, _ := io.ReadAll(conn)
			got = string(b)
			return got != ""
		})
		if got != "hello\n" {
			t.Errorf("through crictl port-forward: %q, want hello (crictl said %q)", got, out.String())
		}
	})
}
