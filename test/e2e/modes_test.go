package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
)

// expectedModes is every file crispd (and what it runs: conmon, runc,
// runsc, c/storage, CNI) creates under run_dir, state_dir and a pod's log
// directory, by path with ids replaced, and the modes each may have. A
// file not listed fails the test, so a new file is a decision, not an
// accident. run_dir and state_dir are 0700, so nothing in them is reachable
// by another user whatever its own mode; the database, which holds whole
// container configs, is 0600 besides.
var expectedModes = map[string][]string{
	"RUN": {"drwx------"}, "STATE": {"drwx------"},
	"RUN/crisp.sock": {"Srw-rw----"}, "RUN/admin.sock": {"Srw-------"},
	"STATE/state.db": {"-rw-------"}, "STATE/state.db-wal": {"-rw-------"}, "STATE/state.db-shm": {"-rw-------"},

	// Container bundles and monitor files; the infra container of a gVisor
	// pod has a rootfs holding nothing but crispd's mount point.
	"RUN/c": {"drwx------"}, "RUN/c/ID": {"drwx------", "drwxr-xr-x"},
	"RUN/c/ID/config.json": {"-rw-------"}, "RUN/c/ID/attach": {"Srwx------"},
	"RUN/c/ID/ctl": {"prw-------", "prw-r-----"}, "RUN/c/ID/winsz": {"prw-r-----"},
	"RUN/c/ID/conmon.log": {"-rw-------"}, "RUN/c/ID/conmon.pid": {"-rw-r--r--"}, "RUN/c/ID/pidfile": {"-rw-r--r--"},
	"RUN/c/ID/monitor.log": {"-rw-------"}, "RUN/c/ID/monitor.pid": {"-rw-r--r--"}, "RUN/c/ID/monitor.sock": {"Srwxr-xr-x"},
	"RUN/c/ID/infra.log": {"-rw-------"}, "RUN/c/ID/rootfs": {"drwxr-xr-x"}, "RUN/c/ID/rootfs/crispd": {"-rw-r--r--", "-rwxr-xr-x"},
	"RUN/attach": {"drwx------"}, "RUN/exits": {"drwx------"}, "RUN/exits/ID": {"-rw-r--r--"},

	// Pods: the files bind-mounted into containers are world-readable, as
	// a container's non-root user must read them; the shm dir is a tmpfs
	// with /dev/shm's sticky 1777.
	"RUN/pods": {"drwx------"}, "RUN/pods/ID": {"drwx------"},
	"RUN/pods/ID/hostname": {"-rw-r--r--"}, "RUN/pods/ID/hosts": {"-rw-r--r--"}, "RUN/pods/ID/resolv.conf": {"-rw-r--r--"},
	"RUN/pods/ID/sandbox.json": {"-rw-------"}, "RUN/pods/ID/infra": {"-rw-------"}, "RUN/pods/ID/infra.log": {"-rw-------"},
	"RUN/pods/ID/infra-root": {"drwxr-xr-x"}, "RUN/pods/ID/shm": {"dtrwxrwxrwx"},
	"RUN/pods/ID/ipcns": {"-r--r--r--"}, "RUN/pods/ID/utsns": {"-r--r--r--"},
	"RUN/netns": {"drwx------"}, "RUN/netns/ID": {"-r--r--r--"},
	// Each runtime's features answer, kept for the next start.
	"RUN/features": {"drwx------"}, "RUN/features/runc.json": {"-rw-r--r--"}, "RUN/features/runsc.json": {"-rw-r--r--"},

	// The runtimes' own roots.
	"RUN/runc": {"drwx------"}, "RUN/runc/ID": {"drwx--x--x"}, "RUN/runc/ID/state.json": {"-rw-------"},
	"RUN/runsc": {"drwx------"}, "RUN/runsc/ID_sandbox:ID.lock": {"-rw-------"}, "RUN/runsc/ID_sandbox:ID.state": {"-rw-r-----"},
	// gVisor's sandbox control socket, and the empty network namespace it
	// pins for its gofers (behind the owner-only RUN/runsc).
	"RUN/runsc/runsc-ID.sock": {"Srwxr-xr-x"}, "RUN/runsc/null-netns": {"-r--r--r--"},

	// CNI's result cache and host-local's allocations.
	"STATE/cni": {"drwx------"}, "STATE/cni/cache": {"drwx------"}, "STATE/cni/cache/results": {"drwx------"},
	"STATE/cni/cache/results/crisp-e2e-ID-eth0": {"-rw-------"}, "STATE/cni/ipam": {"drwx------"},

	// go.podman.io/storage: its run root and graph root.
	"RUN/storage": {"drwx------"}, "RUN/storage/overlay": {"drwx------"}, "RUN/storage/overlay-containers": {"drwx------"},
	"RUN/storage/overlay-layers": {"drwx------"}, "RUN/storage/overlay-layers/mountpoints.json": {"-rw-------"},
	"RUN/storage/overlay-layers/mountpoints.lock": {"-rw-r--r--"}, "RUN/storage/overlay-locks": {"drwx------"},
	"RUN/storage/overlay/FEATURE": {"-rw-r--r--"},
	"STATE/storage/pull-tmp":      {"drwx------"},
	"STATE/storage":               {"drwx------"}, "STATE/storage/storage.lock": {"-rw-r--r--"}, "STATE/storage/userns.lock": {"-rw-r--r--"},
	"STATE/storage/overlay": {"drwxr-xr-x"}, "STATE/storage/overlay/.has-mount-program": {"-rw-------"},
	"STATE/storage/overlay/ID": {"drwx------"}, "STATE/storage/overlay/ID/diff": {"dr-xr-xr-x", "drwxr-xr-x"},
	"STATE/storage/overlay/ID/merged": {"dr-xr-xr-x", "drwx------", "drwxr-xr-x"}, "STATE/storage/overlay/ID/empty": {"drwx------"},
	"STATE/storage/overlay/ID/work": {"drwx------"}, "STATE/storage/overlay/ID/work/work": {"d---------"},
	"STATE/storage/overlay/ID/work/work/incompat": {"d---------"}, "STATE/storage/overlay/ID/work/work/incompat/volatile": {"d---------"},
	"STATE/storage/overlay/ID/work/work/incompat/volatile/dirty": {"----------"},
	"STATE/storage/overlay/ID/link":                              {"-rw-r--r--"}, "STATE/storage/overlay/ID/lower": {"-rw-r--r--"},
	"STATE/storage/overlay/ID/lower-layers": {"-rw-r--r--"},
	"STATE/storage/overlay/l":               {"drwxr-xr-x"}, "STATE/storage/overlay/l/LINK": {"Lrwxrwxrwx"}, "STATE/storage/overlay/tempdirs": {"drwx------"},
	"STATE/storage/overlay/staging":    {"drwx------"},
	"STATE/storage/overlay-containers": {"drwx------"}, "STATE/storage/overlay-containers/ID": {"drwx------"},
	"STATE/storage/overlay-containers/ID/userdata": {"drwx------"}, "STATE/storage/overlay-containers/ID/userdata/config.json": {"-rw-------"},
	"STATE/storage/overlay-containers/containers.lock": {"-rw-r--r--"}, "STATE/storage/overlay-containers/volatile-containers.json": {"-rw-------"},
	"STATE/storage/overlay-images": {"drwx------"}, "STATE/storage/overlay-images/ID": {"drwx------"},
	"STATE/storage/overlay-images/ID/=KEY": {"-rw-------"}, "STATE/storage/overlay-images/ID/manifest": {"-rw-------"},
	"STATE/storage/overlay-images/images.json": {"-rw-------"}, "STATE/storage/overlay-images/images.lock": {"-rw-r--r--"},
	"STATE/storage/overlay-layers": {"drwx------"}, "STATE/storage/overlay-layers/ID.tar-split.gz": {"-rw-------"},
	"STATE/storage/overlay-layers/layers.json": {"-rw-------"}, "STATE/storage/overlay-layers/layers.lock": {"-rw-r--r--"},
	"STATE/storage/overlay-layers/tmp": {"drwx------"}, "STATE/storage/overlay-layers/volatile-layers.json": {"-rw-------"},

	// A pod's log directory is kubelet's (it makes it, 0755); crisp makes
	// it only if it is missing; conmon writes the container log 0600, the
	// monitor of gVisor containers 0640, as containerd does.
	"LOGS": {"drwxr-xr-x"}, "LOGS/main.log": {"-rw-------", "-rw-r-----"},
}

var (
	hexID     = regexp.MustCompile(`[0-9a-f]{64}`)
	linkName  = regexp.MustCompile(`/overlay/l/[A-Z0-9]{26}$`)
	imageKey  = regexp.MustCompile(`/=[A-Za-z0-9+/=_-]+$`)
	featureRe = regexp.MustCompile(`/overlay/[a-z-]+(\(\))?-(true|false)$`)
)

// normalize turns a path into its expectedModes key.
func normalize(p string, roots map[string]string) string {
	for root, name := range roots {
		if rel, ok := strings.CutPrefix(p, root); ok && (rel == "" || rel[0] == '/') {
			p = name + rel
			break
		}
	}
	p = hexID.ReplaceAllString(p, "ID")
	p = linkName.ReplaceAllString(p, "/overlay/l/LINK")
	p = imageKey.ReplaceAllString(p, "/=KEY")
	return featureRe.ReplaceAllString(p, "/overlay/FEATURE")
}

// TestFileModes runs a runc pod, a runc pod with a shared PID namespace (an
// infra process) and a gVisor pod, each with a container, and checks every
// file under run_dir, state_dir and a log directory against expectedModes;
// then it loosens run_dir, state_dir and the database and checks that a
// restart of crispd makes them owner-only again.
func TestFileModes(t *testing.T) {
	harness.RequireRoot(t)
	harness.RequireTool(t, "runsc")
	d := harness.Start(t)
	image := withBusybox(t, d)
	logs := filepath.Join(d.Dir, "logs")
	shared := podConfig("modes-shared")
	shared.LogDirectory = filepath.Join(logs, "shared")
	shared.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	runPodWithContainer(t, d, image, shared, "runc")
	for _, h := range []string{"runc", "runsc"} {
		pc := podConfig("modes-" + h)
		pc.LogDirectory = filepath.Join(logs, h)
		runPodWithContainer(t, d, image, pc, h)
	}

	roots := map[string]string{d.RunDir: "RUN", d.StateDir: "STATE"}
	for _, h := range []string{"shared", "runc", "runsc"} {
		roots[filepath.Join(logs, h)] = "LOGS"
	}
	seen := map[string]bool{}
	for root := range roots {
		err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			key := normalize(p, roots)
			// Image layers and container root filesystems hold the image's
			// own files, with the image's modes.
			if strings.HasSuffix(key, "/diff") || strings.HasSuffix(key, "/merged") || strings.HasSuffix(key, "/rootfs") && strings.HasPrefix(key, "RUN/pods") {
				checkMode(t, p, key)
				return fs.SkipDir
			}
			checkMode(t, p, key)
			seen[key] = true
			return nil
		})
		if err != nil {
			t.Fatalf("walk %s: %v", root, err)
		}
	}
	for _, must := range []string{"STATE/state.db", "STATE/state.db-wal", "RUN/c/ID/config.json", "RUN/pods/ID/sandbox.json", "LOGS/main.log", "RUN/runsc/ID_sandbox:ID.state"} {
		if !seen[must] {
			t.Errorf("%s was not found: the pods did not make what the test expects to check", must)
		}
	}

	// Loosened by hand (or an older crisp): a restart tightens them again.
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{d.RunDir, d.StateDir} {
		os.Chmod(p, 0o755)
	}
	os.Chmod(d.Database(), 0o644)
	d.Restart()
	for _, p := range []string{d.RunDir, d.StateDir, d.Database()} {
		checkMode(t, p, normalize(p, roots))
	}
}

func checkMode(t *testing.T, p, key string) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Errorf("%s: %v", p, err)
		return
	}
	got := fi.Mode().String()
	t.Logf("%s %s", got, p) // with -v: the stat of every file checked
	want, ok := expectedModes[key]
	switch {
	case !ok:
		t.Errorf("%s (%s): mode %s, and no expected mode is listed for it", key, p, got)
	case !slices.Contains(want, got):
		t.Errorf("%s (%s): mode %s, want one of %v", key, p, got, want)
	}
	if fi.Mode().Perm()&0o002 != 0 && fi.Mode()&(fs.ModeSymlink|fs.ModeSticky) == 0 {
		t.Errorf("%s is world-writable (%s)", p, got)
	}
}
