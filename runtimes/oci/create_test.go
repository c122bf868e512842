package oci

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestConmonArgs(t *testing.T) {
	r := New(Handler{Name: "gvisor", Type: TypeRunsc, Path: "/usr/bin/runsc", Root: "/run/x/runsc",
		ExtraArgs: []string{"--network=none", "--oci-seccomp"}}, "/usr/bin/conmon", nil)
	c := CreateOpts{ID: "c1", Bundle: "/b", LogPath: "/l/c1.log", ExitDir: "/e", PersistDir: "/p", SocketDir: "/s"}
	base := "--api-version 1 -c c1 -u c1 -n c1 -r /usr/bin/runsc --runtime-arg --root=/run/x/runsc " +
		"--runtime-arg --network=none --runtime-arg --oci-seccomp -b /b -p /b/pidfile -P /b/conmon.pid " +
		"--persist-dir /p --exit-dir /e -l /l/c1.log --socket-dir-path /s --full-attach --log-level info"
	tests := []struct {
		name                       string
		terminal, stdin, stdinOnce bool
		want                       string
	}{
		{"plain", false, false, false, base},
		{"terminal", true, true, false, base + " -t"},
		{"stdin", false, true, false, base + " -i --leave-stdin-open"},
		{"stdin once", false, true, true, base + " -i"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := c
			c.Terminal, c.Stdin, c.StdinOnce = tt.terminal, tt.stdin, tt.stdinOnce
			got := strings.Join(r.conmonArgs(c), " ")
			if got != tt.want {
				t.Errorf("conmonArgs() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// Under runsc's netstack, --network comes from Handler.Network on every
// command line (conmon's, the monitor's, crisp's own), and `runsc start`
// of a pod's sandbox runs through the netns shim.
func TestNetstackArgs(t *testing.T) {
	r := New(Handler{Name: "runsc", Type: TypeRunsc, Path: "/usr/bin/runsc", Root: "/run/x/runsc", Network: NetworkSandbox,
		ExtraArgs: []string{"--oci-seccomp"}, NetNSShim: []string{"/bin/crispd", "runsc-netns-shim"}}, "/usr/bin/conmon", nil)
	if !r.Netstack() {
		t.Errorf("Netstack() = false, want true")
	}
	if got, want := strings.Join(r.globalArgs(), " "), "--root /run/x/runsc --network=sandbox --oci-seccomp"; got != want {
		t.Errorf("globalArgs() = %q, want %q", got, want)
	}
	if got, want := strings.Join(r.GlobalArgs(), " "), "--root=/run/x/runsc --network=sandbox --oci-seccomp"; got != want {
		t.Errorf("GlobalArgs() = %q, want %q", got, want)
	}
	c := CreateOpts{ID: "p1", Bundle: "/b", LogPath: "/l/p1.log", ExitDir: "/e", PersistDir: "/p"}
	if got := strings.Join(r.conmonArgs(c), " "); !strings.Contains(got, "-r /usr/bin/runsc --runtime-arg --root=/run/x/runsc --runtime-arg --network=sandbox --runtime-arg --oci-seccomp -b") {
		t.Errorf("conmonArgs() = %s, want runsc with --network=sandbox", got)
	}
	ctx := context.Background()
	got := strings.Join(r.shimmedCommand(ctx, "/run/crisp/netns/p1", "start", "p1").Args, " ")
	want := "/bin/crispd runsc-netns-shim --netns=/run/crisp/netns/p1 --runtime=/usr/bin/runsc -- " +
		"--root /run/x/runsc --network=sandbox --oci-seccomp start p1"
	if got != want {
		t.Errorf("shimmedCommand(start) =\n%s\nwant\n%s", got, want)
	}
	if got, want := strings.Join(r.shimmedCommand(ctx, "", "state", "p1").Args, " "), "/usr/bin/runsc --root /run/x/runsc --network=sandbox --oci-seccomp state p1"; got != want {
		t.Errorf("shimmedCommand(no netns) = %s, want %s", got, want)
	}
	// The shim parses that back to runsc's own command line.
	netns, rt, args, err := ParseNetNSShimArgs(r.shimmedCommand(ctx, "/run/crisp/netns/p1", "start", "p1").Args[2:])
	if err != nil || netns != "/run/crisp/netns/p1" || rt != "/usr/bin/runsc" ||
		strings.Join(args, " ") != "--root /run/x/runsc --network=sandbox --oci-seccomp start p1" {
		t.Errorf("ParseNetNSShimArgs() = %q, %q, %q, %v", netns, rt, args, err)
	}

	host := New(Handler{Name: "runsc", Type: TypeRunsc, Path: "/usr/bin/runsc", Root: "/r", Network: NetworkHost,
		NetNSShim: []string{"/bin/crispd", "runsc-netns-shim"}}, "/usr/bin/conmon", nil)
	runc := New(Handler{Name: "runc", Type: TypeRunc, Path: "/usr/sbin/runc", Root: "/r", Network: NetworkSandbox}, "/usr/bin/conmon", nil)
	for _, other := range []*Runtime{host, runc} {
		if other.Netstack() {
			t.Errorf("%s (network %q) Netstack() = true, want false", other.h.Type, other.h.Network)
		}
	}
	if got, want := strings.Join(host.globalArgs(), " "), "--root /r --network=host"; got != want {
		t.Errorf("host mode globalArgs() = %q, want %q", got, want)
	}
	if got, want := strings.Join(runc.globalArgs(), " "), "--root /r"; got != want {
		t.Errorf("runc globalArgs() = %q, want %q (runc has no --network)", got, want)
	}
}

// The shim is given the pod's network namespace from the sandbox's spec,
// and only under netstack.
func TestShimNetNS(t *testing.T) {
	bundle := t.TempDir()
	spec := testSpec("p1", []string{"true"})
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			spec.Linux.Namespaces[i].Path = "/run/crisp/netns/p1"
		}
	}
	writeSpecFile(t, bundle, spec)
	noNet := t.TempDir() // a new network namespace, not a pod's pinned one
	writeSpecFile(t, noNet, testSpec("p2", []string{"true"}))
	shim := []string{"/bin/crispd", "runsc-netns-shim"}
	tests := []struct {
		name   string
		h      Handler
		bundle string
		want   string
	}{
		{"netstack", Handler{Type: TypeRunsc, Network: NetworkSandbox, NetNSShim: shim}, bundle, "/run/crisp/netns/p1"},
		{"host mode", Handler{Type: TypeRunsc, Network: NetworkHost, NetNSShim: shim}, bundle, ""},
		{"no shim", Handler{Type: TypeRunsc, Network: NetworkSandbox}, bundle, ""},
		{"no netns in spec", Handler{Type: TypeRunsc, Network: NetworkSandbox, NetNSShim: shim}, noNet, ""},
		{"runc", Handler{Type: TypeRunc, NetNSShim: shim}, bundle, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := New(tt.h, "", nil).shimNetNS(tt.bundle); got != tt.want {
				t.Errorf("shimNetNS() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseNetNSShimArgsRejects(t *testing.T) {
	for _, argv := range [][]string{
		nil,
		{"--netns=/n", "--runtime=/r"},            // no --
		{"--netns=/n", "--", "create"},            // no runtime
		{"--runtime=/r", "--", "create"},          // no netns
		{"--netns=/n", "--runtime=/r", "--"},      // nothing to run
		{"--netns=/n", "--bogus", "--", "create"}, // unknown flag
	} {
		if _, _, _, err := ParseNetNSShimArgs(argv); err == nil {
			t.Errorf("ParseNetNSShimArgs(%q) = nil error, want one", argv)
		}
	}
}

func TestCreateValidates(t *testing.T) {
	r := New(Handler{Name: "runc", Type: TypeRunc, Path: "/nonexistent", Root: t.TempDir()}, "/nonexistent", nil)
	dir := t.TempDir()
	good := CreateOpts{ID: "c1", Bundle: dir, LogPath: dir + "/l", ExitDir: dir + "/e", PersistDir: dir + "/p"}
	tests := []struct {
		name string
		edit func(*CreateOpts)
		want string
	}{
		{"bad id", func(c *CreateOpts) { c.ID = "a/b" }, "invalid container id"},
		{"no persist dir", func(c *CreateOpts) { c.PersistDir = "" }, "no persist dir"},
		{"long bundle", func(c *CreateOpts) { c.Bundle = "/" + strings.Repeat("b", 110) }, "too long"},
		{"no conmon", func(c *CreateOpts) {}, "start conmon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			_, err := r.Create(context.Background(), c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Create() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestCreateTimeout runs real conmon with a runtime whose create hangs:
// Create must give up with ctx, kill conmon (and with it the runtime, by
// conmon's PDEATHSIG) and clean up.
func TestCreateTimeout(t *testing.T) {
	needRoot(t)
	r, dir := fakeRuntime(t, TypeRunc, `case "$*" in *" create "*) exec sleep 31.5;; esac`)
	r.conmon = conmonBin
	bundle := t.TempDir()
	c := CreateOpts{ID: "hang1", Bundle: bundle, LogPath: filepath.Join(bundle, "ctr.log"),
		ExitDir: filepath.Join(bundle, "exits"), PersistDir: filepath.Join(bundle, "persist")}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Create(ctx, c)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Create() = %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Create() took %v", took)
	}
	conmonPid, err := readPidFile(filepath.Join(bundle, conmonPidName))
	if err != nil {
		t.Fatal(err)
	}
	if !waitFor(3*time.Second, func() bool { return !conmonAlive(conmonPid) }) {
		t.Errorf("conmon %d survived a timed-out Create", conmonPid)
		_ = syscall.Kill(conmonPid, syscall.SIGKILL)
	}
	if !waitFor(3*time.Second, func() bool { return len(findProcs("sleep\x0031.5")) == 0 }) {
		t.Errorf("the hung runtime survived: %v", findProcs("sleep\x0031.5"))
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "args"))
	if !strings.Contains(string(calls), "delete --force hang1") {
		t.Errorf("last runtime call = %q, want delete --force hang1", calls)
	}
}

// findProcs returns the pids whose command line contains s (NUL-separated).
func findProcs(s string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.Contains(string(cmdline), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestCreateSilentFailure: a runtime that fails without a word makes
// conmon exit without a sync message.
func TestCreateSilentFailure(t *testing.T) {
	needRoot(t)
	r, _ := fakeRuntime(t, TypeRunc, `case "$*" in *" create "*) exit 1;; esac`)
	r.conmon = conmonBin
	bundle := t.TempDir()
	c := CreateOpts{ID: "silent1", Bundle: bundle, LogPath: filepath.Join(bundle, "ctr.log"),
		ExitDir: filepath.Join(bundle, "exits"), PersistDir: filepath.Join(bundle, "persist")}
	_, err := r.Create(testCtx(t), c)
	if err == nil || !strings.Contains(err.Error(), "without reporting a pid") {
		t.Errorf("Create() = %v, want conmon exited without reporting a pid", err)
	}
}

// writeSpecFile writes spec as dir/config.json.
func writeSpecFile(t *testing.T, dir string, spec *specs.Spec) {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}
