package oci

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crisp-cri/crisp/runtimes/layout"
)

func TestConmonArgs(t *testing.T) {
	r := New(Handler{Name: "gvisor", Type: TypeRunsc, Path: "/usr/bin/runsc", Root: "/run/x/runsc",
		ExtraArgs: []string{"--network=none", "--oci-seccomp"}}, "/usr/bin/conmon", layout.New("/r"), nil)
	c := CreateOpts{ID: "c1", LogPath: "/l/c1.log"}
	base := "--api-version 1 -c c1 -u c1 -n c1 -r /usr/bin/runsc --runtime-arg --root=/run/x/runsc " +
		"--runtime-arg --network=none --runtime-arg --oci-seccomp -b /r/c/c1 -p /r/c/c1/pidfile -P /r/c/c1/conmon.pid " +
		"--persist-dir /r/c/c1 --exit-dir /r/exits -l /l/c1.log --socket-dir-path /r/attach --full-attach --log-level info"
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
			got := strings.Join(r.conmonArgs(c, r.files.Container(c.ID)), " ")
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
		ExtraArgs: []string{"--oci-seccomp"}, NetNSShim: []string{"/bin/crispd", "runsc-netns-shim"}}, "/usr/bin/conmon", layout.New("/r"), nil)
	if !r.Netstack() {
		t.Errorf("Netstack() = false, want true")
	}
	if got, want := strings.Join(r.globalArgs(), " "), "--root /run/x/runsc --network=sandbox --oci-seccomp"; got != want {
		t.Errorf("globalArgs() = %q, want %q", got, want)
	}
	if got, want := strings.Join(r.GlobalArgs(), " "), "--root=/run/x/runsc --network=sandbox --oci-seccomp"; got != want {
		t.Errorf("GlobalArgs() = %q, want %q", got, want)
	}
	c := CreateOpts{ID: "p1", LogPath: "/l/p1.log"}
	if got := strings.Join(r.conmonArgs(c, r.files.Container(c.ID)), " "); !strings.Contains(got, "-r /usr/bin/runsc --runtime-arg --root=/run/x/runsc --runtime-arg --network=sandbox --runtime-arg --oci-seccomp -b") {
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
		NetNSShim: []string{"/bin/crispd", "runsc-netns-shim"}}, "/usr/bin/conmon", layout.New("/r"), nil)
	runc := New(Handler{Name: "runc", Type: TypeRunc, Path: "/usr/sbin/runc", Root: "/r", Network: NetworkSandbox}, "/usr/bin/conmon", layout.New("/r"), nil)
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
	files := layout.New(t.TempDir())
	pod := files.Container("p1")
	spec := testSpec("p1", []string{"true"})
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			spec.Linux.Namespaces[i].Path = "/run/crisp/netns/p1"
		}
	}
	writeSpecFile(t, pod, spec)
	noNet := files.Container("p2") // a new network namespace, not a pod's pinned one
	writeSpecFile(t, noNet, testSpec("p2", []string{"true"}))
	shim := []string{"/bin/crispd", "runsc-netns-shim"}
	tests := []struct {
		name   string
		h      Handler
		bundle layout.Container
		want   string
	}{
		{"netstack", Handler{Type: TypeRunsc, Network: NetworkSandbox, NetNSShim: shim}, pod, "/run/crisp/netns/p1"},
		{"host mode", Handler{Type: TypeRunsc, Network: NetworkHost, NetNSShim: shim}, pod, ""},
		{"no shim", Handler{Type: TypeRunsc, Network: NetworkSandbox}, pod, ""},
		{"no netns in spec", Handler{Type: TypeRunsc, Network: NetworkSandbox, NetNSShim: shim}, noNet, ""},
		{"no spec", Handler{Type: TypeRunsc, Network: NetworkSandbox, NetNSShim: shim}, files.Container("p3"), ""},
		{"runc", Handler{Type: TypeRunc, NetNSShim: shim}, pod, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := New(tt.h, "", files, nil).shimNetNS(tt.bundle); got != tt.want {
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
	h := Handler{Name: "runc", Type: TypeRunc, Path: "/nonexistent", Root: t.TempDir()}
	dir := t.TempDir()
	good := CreateOpts{ID: "c1", LogPath: dir + "/l"}
	tests := []struct {
		name   string
		runDir string // "" for dir
		edit   func(*CreateOpts)
		want   string
	}{
		{"bad id", "", func(c *CreateOpts) { c.ID = "a/b" }, "invalid container id"},
		{"dot id", "", func(c *CreateOpts) { c.ID = ".." }, "invalid container id"},
		{"no log path", "", func(c *CreateOpts) { c.LogPath = "" }, "no log path"},
		{"relative run dir", "run", func(c *CreateOpts) {}, "is not absolute"},
		{"long bundle", "/" + strings.Repeat("b", 110), func(c *CreateOpts) {}, "too long"},
		{"no conmon", "", func(c *CreateOpts) {}, "start conmon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runDir := tt.runDir
			if runDir == "" {
				runDir = dir
			}
			c := good
			tt.edit(&c)
			_, err := New(h, "/nonexistent", layout.New(runDir), nil).Create(context.Background(), c)
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
	files := r.files.Container("hang1")
	c := CreateOpts{ID: files.ID, LogPath: filepath.Join(files.Bundle, "ctr.log")}
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
	conmonPid, err := readPidFile(files.ConmonPidFile())
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
	files := r.files.Container("silent1")
	c := CreateOpts{ID: files.ID, LogPath: filepath.Join(files.Bundle, "ctr.log")}
	_, err := r.Create(testCtx(t), c)
	if err == nil || !strings.Contains(err.Error(), "without reporting a pid") {
		t.Errorf("Create() = %v, want conmon exited without reporting a pid", err)
	}
}

// writeSpecFile makes the container's bundle and writes spec there.
func writeSpecFile(t *testing.T, files layout.Container, spec *specs.Spec) {
	t.Helper()
	if err := os.MkdirAll(files.Bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := files.WriteSpec(spec); err != nil {
		t.Fatal(err)
	}
}
