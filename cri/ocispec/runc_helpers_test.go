package ocispec

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// needRunc returns runc's path, or skips the test when not root or runc is
// missing. Under CI (env CI set) it fails instead: CI runs as root with
// runc installed, so a skip there would hide a broken setup.
func needRunc(t *testing.T) string {
	t.Helper()
	runc, err := exec.LookPath("runc")
	var why string
	switch {
	case os.Geteuid() != 0:
		why = "needs root"
	case err != nil:
		why = "needs runc on PATH"
	case func() bool { _, err := os.Stat("/bin/busybox"); return err != nil }():
		why = "needs a static /bin/busybox"
	default:
		return runc
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but the runc test cannot run: %s", why)
	}
	t.Skip(why)
	return ""
}

func randomID(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

func writeFile(t *testing.T, path, body string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

// busyboxRootfs makes a rootfs with busybox, a few applet links, and users.
func busyboxRootfs(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "rootfs")
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "bin/busybox"), string(bb), 0o755)
	for _, applet := range []string{"sh", "id", "cat", "touch"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n", 0o644)
	writeFile(t, filepath.Join(root, "etc/group"), "root:x:0:\nextra:x:4000:app\n", 0o644)
	return root
}

// runBundle writes spec as a bundle and runs it in the foreground with
// runc, returning stdout. It removes the container and the cgroup parents
// runc leaves behind (cgroup v1: one tree per controller).
func runBundle(t *testing.T, runc, dir, id string, s *specs.Spec, cgroupParent string) string {
	t.Helper()
	bundle := filepath.Join(dir, "bundle")
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(bundle, "config.json"), string(b), 0o600)
	root := filepath.Join(dir, "runc")
	t.Cleanup(func() {
		_ = exec.Command(runc, "--root", root, "delete", "--force", id).Run()
		removeCgroups(t, strings.TrimPrefix(s.Linux.CgroupsPath, "/"), strings.TrimPrefix(cgroupParent, "/"))
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, runc, "--root", root, "run", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("runc run: %v\nstdout:\n%s\nstderr:\n%s\nspec:\n%s", err, stdout.String(), stderr.String(), b)
	}
	return stdout.String()
}

func removeCgroups(t *testing.T, dirs ...string) {
	t.Helper()
	ctrls, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return
	}
	for _, c := range ctrls {
		for _, d := range dirs {
			err := os.Remove(filepath.Join("/sys/fs/cgroup", c.Name(), d))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("remove cgroup %s/%s: %v", c.Name(), d, err)
			}
		}
	}
}

// statusField returns a /proc/<pid>/status field's value.
func statusField(out, name string) string {
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "<missing>"
}

func outputLine(out, key string) string {
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return v
		}
	}
	return "<missing>"
}
