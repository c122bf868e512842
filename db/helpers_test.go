package db

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// mustOpen opens a fresh store in a temp dir, with every migration applied.
func mustOpen(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "state.db"), Options{})
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testSandbox returns a sandbox row for kube pod name in namespace ns.
func testSandbox(name string) Sandbox {
	return Sandbox{
		ID:            NewID(),
		Name:          fmt.Sprintf("k8s_POD_%s_default_uid-%s_0", name, name),
		KubeName:      name,
		KubeNamespace: "default",
		KubeUID:       "uid-" + name,
		Handler:       "runc",
		Trust:         "trusted",
		TrustReason:   "default",
		Labels:        StringMap{"app": name},
		Config:        []byte("config of " + name),
		ConfigHash:    "hash-" + name,
	}
}

// mustReadySandbox creates a sandbox and moves it to ready.
func mustReadySandbox(t testing.TB, s *Store, name string) Sandbox {
	t.Helper()
	ctx := context.Background()
	sb, created, err := s.CreateSandbox(ctx, testSandbox(name))
	if err != nil || !created {
		t.Fatalf("CreateSandbox(%s) = %v, created=%v", name, err, created)
	}
	if err := s.SetSandboxState(ctx, sb.ID, SandboxReady, SandboxCreating); err != nil {
		t.Fatalf("SetSandboxState(ready) = %v", err)
	}
	sb.State = SandboxReady
	return sb
}

func testContainer(sandboxID, name string) Container {
	return Container{
		ID:         NewID(),
		SandboxID:  sandboxID,
		Name:       fmt.Sprintf("k8s_%s_%s_default_uid_0", name, sandboxID[:8]),
		KubeName:   name,
		Image:      "busybox:latest",
		Labels:     StringMap{"role": name},
		Config:     []byte("config of " + name),
		ConfigHash: "hash-" + name,
	}
}

func mustCreateContainer(t testing.TB, s *Store, sandboxID, name string) Container {
	t.Helper()
	c, created, err := s.CreateContainer(context.Background(), testContainer(sandboxID, name))
	if err != nil || !created {
		t.Fatalf("CreateContainer(%s) = %v, created=%v", name, err, created)
	}
	return c
}
