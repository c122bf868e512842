package stream

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeContainers serves the test containers to the Server.
type fakeContainers struct {
	mu      sync.Mutex
	ctrs    map[string]testContainer
	netns   map[string]string     // pod id -> path
	bridges map[string]ExecTarget // pod id -> bridge, for pods on a netstack
}

func newFake() *fakeContainers {
	return &fakeContainers{ctrs: map[string]testContainer{}, netns: map[string]string{}, bridges: map[string]ExecTarget{}}
}

func (f *fakeContainers) add(c testContainer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ctrs[c.id] = c
}

func (f *fakeContainers) get(id string) (testContainer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ctrs[id]
	if !ok {
		return c, fmt.Errorf("container %s: %w", id, os.ErrNotExist)
	}
	return c, nil
}

func (f *fakeContainers) ExecTarget(_ context.Context, id string) (ExecTarget, error) {
	c, err := f.get(id)
	if err != nil {
		return ExecTarget{}, err
	}
	return ExecTarget{RuntimePath: runcBin, GlobalArgs: []string{"--root=" + filepath.Join(testRoot, "runc")},
		ContainerID: c.id, Process: testProcess(nil), TTYArgs: []string{"--tty"}}, nil
}

func (f *fakeContainers) AttachTarget(_ context.Context, id string) (AttachTarget, error) {
	c, err := f.get(id)
	if err != nil {
		return AttachTarget{}, err
	}
	return AttachTarget{Socket: c.files.AttachSocket(), CtlFifo: c.files.CtlFifo(),
		Tty: c.opts.tty, Stdin: c.opts.stdin, StdinOnce: c.opts.stdinOnce}, nil
}

func (f *fakeContainers) PortForwardTarget(_ context.Context, podID string) (PortForwardTarget, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b, ok := f.bridges[podID]; ok {
		return PortForwardTarget{Bridge: &b}, nil
	}
	p, ok := f.netns[podID]
	if !ok {
		return PortForwardTarget{}, fmt.Errorf("pod %s: %w", podID, os.ErrNotExist)
	}
	return PortForwardTarget{NetNS: p}, nil
}

// newTestServer starts a Server on 127.0.0.1 for f, stopped at cleanup.
func newTestServer(t *testing.T, f Containers) *Server {
	t.Helper()
	s, err := New(Config{}, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("Stop() = %v", err)
		}
	})
	return s
}

// syncBuffer is an io.WriteCloser that tests can poll while a session
// writes to it.
type syncBuffer struct {
	mu     sync.Mutex
	b      strings.Builder
	closed bool
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitOutput waits until b contains want.
func waitOutput(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	if !waitFor(20*time.Second, func() bool { return strings.Contains(b.String(), want) }) {
		t.Fatalf("output %q never contained %q", b.String(), want)
	}
}

var _ io.WriteCloser = (*syncBuffer)(nil)
