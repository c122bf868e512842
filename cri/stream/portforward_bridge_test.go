package stream

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bridgeEnv serves pod1 through a bridge (the test binary as a fake
// runtime, see fakeRuntime) and returns the ports of servers on the
// host's loopback standing in for the pod's: "hello" then close, echo
// until EOF then close, silent and never closing, and a closed port.
func bridgeEnv(t *testing.T) (rt runtimeAdapter, hello, echo, silent, closed int32, pids string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pids = t.TempDir()
	t.Setenv(fakeRuntimeEnv, "1")
	t.Setenv(fakePidsEnv, pids)
	f := newFake()
	f.bridges["pod1"] = ExecTarget{RuntimePath: self, GlobalArgs: []string{"--root=/fake"}, ContainerID: "infra1",
		Process: testProcess([]string{"/crispd", "port-forward-stdio"})}
	rt = runtimeAdapter{newTestServer(t, f)}

	serve := func(handle func(*net.TCPConn)) int32 {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go handle(c.(*net.TCPConn))
			}
		}()
		return int32(ln.Addr().(*net.TCPAddr).Port)
	}
	hello = serve(func(c *net.TCPConn) { io.WriteString(c, "hello\n"); c.Close() })
	echo = serve(func(c *net.TCPConn) { io.Copy(c, c); c.Close() })
	held := make(chan struct{})
	t.Cleanup(func() { close(held) })
	silent = serve(func(c *net.TCPConn) { <-held; c.Close() })
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed = int32(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	return rt, hello, echo, silent, closed, pids
}

// A pod whose network the host cannot dial is reached through a bridge
// process that the runtime execs in it: the same half-close, linger and
// errors as a forward in a network namespace, and no bridge left behind.
func TestPortForwardThroughBridge(t *testing.T) {
	rt, hello, echo, silent, closed, pids := bridgeEnv(t)
	big := strings.Repeat("0123456789", 50000)
	tests := []struct {
		name string
		port int32
		send string
		want string
	}{
		{name: "server speaks", port: hello, want: "hello\n"},
		{name: "client speaks, server echoes", port: echo, send: "ping\n", want: "ping\n"},
		{name: "bigger than a buffer", port: echo, send: big, want: big},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			got, err := forward(rt, t, "pod1", tt.port, tt.send)
			if err != nil || got != tt.want {
				t.Errorf("PortForward(%d) = %.40q (%d bytes), %v, want %.40q (%d bytes), nil", tt.port, got, len(got), err, tt.want, len(tt.want))
			}
			// The end of the client's side reaches the pod's server at
			// once (half-close through the bridge): no linger.
			if took := time.Since(start); took >= portForwardLinger {
				t.Errorf("PortForward(%d) took %v, want less than the linger %v", tt.port, took, portForwardLinger)
			}
		})
	}
	t.Run("silent pod", func(t *testing.T) {
		start := time.Now()
		got, err := forward(rt, t, "pod1", silent, "x")
		took := time.Since(start)
		if err != nil || got != "" || took < portForwardLinger || took > portForwardLinger+bridgeExitWait+3*time.Second {
			t.Errorf("PortForward(silent) = %q, %v after %v, want nothing, nil after %v", got, err, took, portForwardLinger)
		}
	})
	t.Run("closed port", func(t *testing.T) {
		_, err := forward(rt, t, "pod1", closed, "")
		if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "exited with status 1") {
			t.Errorf("PortForward(closed port) = %v, want the bridge's exit status 1 and connection refused", err)
		}
		t.Logf("closed port: %v", err)
	})
	// Every bridge has exited, and was reaped.
	entries, err := os.ReadDir(pids)
	if err != nil || len(entries) < 5 {
		t.Fatalf("bridge pid files = %d, %v; want one per forward (5)", len(entries), err)
	}
	for _, e := range entries {
		pid, _ := strconv.Atoi(e.Name())
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("bridge process %d still exists (kill 0: %v)", pid, err)
		}
	}
}
