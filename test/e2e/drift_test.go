package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	_ "modernc.org/sqlite" // the "sqlite" driver, to write behind crispd's back

	"github.com/crisp-cri/crisp/cri/adminpb"
	"github.com/crisp-cri/crisp/runtimes/storage"
	"github.com/crisp-cri/crisp/test/harness"
)

// driftGrace is the test daemon's reconciler grace: short, so that rows
// made a moment ago are old enough to repair, while the periodic pass
// (every hour) never runs during the test: only crispctl's passes act.
const driftGrace = time.Second

// driftAction is one reconcile action as the test expects it.
type driftAction struct {
	kind, object, id, name, reason string
}

func (a driftAction) key() string { return a.kind + " " + a.object + " " + a.id + " " + a.name }

func (a driftAction) String() string { return a.key() + ": " + a.reason }

// TestDrift changes the node behind crispd's back, the ways issue #5 lists,
// and checks that one `crispctl reconcile` repairs each as DESIGN.md says
// (Truth and crash safety; Reconciler), journals every repair, and that a
// second pass finds nothing:
//
//   - runc kill -9 of a container, its conmon alive: conmon's exit file
//     says 137, and that is what ContainerStatus shows.
//   - runc kill -9 of a container whose conmon was killed first: no exit
//     file; mark-exited, 255 Unknown ("runtime says stopped").
//   - runc delete --force of a running container, conmon alive: exited 137,
//     from the exit file.
//   - runc delete --force of a container whose conmon was killed first:
//     mark-exited, 255 Unknown ("runtime has no such container").
//   - an exited container removed from the runtime and from container
//     storage: forget (row gone, name free again).
//   - a pod's netns pin unmounted and removed: the pod is notready, its IP
//     released.
//   - a pod's netns pin unmounted, the file left: the pod is notready, the
//     stale pin cleaned (CNI DEL and unpin), its IP released.
//   - a shared-PID pod's infra process killed: the pod is notready, its
//     netns cleaned, its container (killed with the PID namespace) exited.
//   - an unknown container started in crisp's runc root: orphan, killed
//     and deleted.
//   - a name row inserted for an owner that has no row: released.
//
// At the end the pods go through the CRI and nothing is left: no runtime
// container, netns pin, pod dir, mount, IP, monitor or infra process.
func TestDrift(t *testing.T) {
	harness.RequireRoot(t)
	runcBin := harness.RequireTool(t, "runc")
	harness.RequireTool(t, "pgrep")
	busyboxBin := harness.RequireTool(t, "busybox") // static (busybox-static): the stranger's rootfs
	d := harness.Start(t, harness.WithTOML(fmt.Sprintf("[reconciler]\ninterval = \"1h\"\ngrace = %q", driftGrace)))
	image := withBusybox(t, d)
	rt := d.Runtime()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	runcRoot := filepath.Join(d.RunDir, "runc")
	runc := func(args ...string) (string, error) {
		out, err := exec.Command(runcBin, append([]string{"--root", runcRoot}, args...)...).CombinedOutput()
		return string(out), err
	}

	// The scene. Pod "drift-ctr" holds the containers that drift one by
	// one; "gone" exits by itself with 3 before it is taken away.
	ctrPod, cKill := runPodWithContainer(t, d, image, podConfig("drift-ctr"), "")
	startIn := func(podID, name string, cmd ...string) string {
		t.Helper()
		c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: containerConfig(name, image, cmd...)})
		if err != nil {
			t.Fatalf("CreateContainer(%s) = %v", name, err)
		}
		if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			t.Fatalf("StartContainer(%s) = %v", name, err)
		}
		return c.ContainerId
	}
	cKillNoMon := startIn(ctrPod, "kill-nomon", "sleep", "600")
	cDel := startIn(ctrPod, "delete", "sleep", "600")
	cDelNoMon := startIn(ctrPod, "delete-nomon", "sleep", "600")
	cGone := startIn(ctrPod, "gone", "sh", "-c", "exit 3")
	netnsPod, _ := runPodWithContainer(t, d, image, podConfig("drift-netns"), "")
	stalePod, _ := runPodWithContainer(t, d, image, podConfig("drift-stale-pin"), "")
	shared := podConfig("drift-infra")
	shared.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	infraPod, infraCtr := runPodWithContainer(t, d, image, shared, "")
	waitExited(ctx, t, d, cGone, 3)
	netnsIP, staleIP := podIP(ctx, t, d, netnsPod), podIP(ctx, t, d, stalePod)
	infraPin := filepath.Join(d.RunDir, "netns", infraPod)
	stalePin := filepath.Join(d.RunDir, "netns", stalePod)
	if _, err := os.Stat(infraPin); err != nil {
		t.Fatalf("the shared-PID pod has no netns pin: %v", err)
	}
	if out, _, err := d.Crispctl("reconcile"); err != nil || !strings.HasPrefix(out, "reconcile pass: 0 actions") {
		t.Fatalf("crispctl reconcile before any drift = %q, %v; want no action", out, err)
	}

	// The drift, behind crispd's back.
	exitFile := func(id string) string { return filepath.Join(d.RunDir, "exits", id) }
	// 1. runc kill, conmon watching.
	if out, err := runc("kill", cKill, "KILL"); err != nil {
		t.Fatalf("runc kill %s: %v: %s", cKill, err, out)
	}
	// 2. runc kill of a container whose monitor is gone: nobody writes an
	// exit file.
	killMonitor(t, d, cKillNoMon)
	if out, err := runc("kill", cKillNoMon, "KILL"); err != nil {
		t.Fatalf("runc kill %s: %v: %s", cKillNoMon, err, out)
	}
	// 3. runc delete --force, conmon watching.
	if out, err := runc("delete", "--force", cDel); err != nil {
		t.Fatalf("runc delete --force %s: %v: %s", cDel, err, out)
	}
	// 4. runc delete --force of a container whose monitor is gone.
	killMonitor(t, d, cDelNoMon)
	if out, err := runc("delete", "--force", cDelNoMon); err != nil {
		t.Fatalf("runc delete --force %s: %v: %s", cDelNoMon, err, out)
	}
	// 5. An exited container deleted from the runtime, and its record
	// removed from container storage (as `podman rm` on the same store
	// would): the store is opened in this process, beside crispd's.
	if out, err := runc("delete", cGone); err != nil {
		t.Fatalf("runc delete %s: %v: %s", cGone, err, out)
	}
	removeFromStorage(t, d, cGone)
	// 6. A netns pin unmounted and removed.
	netnsPin := filepath.Join(d.RunDir, "netns", netnsPod)
	if err := unix.Unmount(netnsPin, unix.MNT_DETACH); err != nil {
		t.Fatalf("unmount %s: %v", netnsPin, err)
	}
	if err := os.Remove(netnsPin); err != nil {
		t.Fatal(err)
	}
	// 7. A netns pin unmounted, its file left behind.
	if err := unix.Unmount(stalePin, unix.MNT_DETACH); err != nil {
		t.Fatalf("unmount %s: %v", stalePin, err)
	}
	// 8. The infra process of the shared-PID pod killed: the kernel kills
	// every process of its PID namespace with it.
	infraPID := pgrep(t, "pause --isolate "+filepath.Join(d.RunDir, "pods", infraPod))
	if infraPID == "" {
		t.Fatal("no crispd pause process for the shared-PID pod")
	}
	pid, _ := strconv.Atoi(infraPID)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill infra %d: %v", pid, err)
	}
	// 9. A container crisp never made, in crisp's runc root.
	stranger := "drift-stranger"
	startStranger(t, runcBin, busyboxBin, runcRoot, stranger)
	var strangerState struct {
		Status string `json:"status"`
		PID    int    `json:"pid"`
	}
	if out, err := runc("state", stranger); err != nil || json.Unmarshal([]byte(out), &strangerState) != nil || strangerState.Status != "running" {
		t.Fatalf("runc state %s = %s, %v; want running", stranger, out, err)
	}
	// 10. A name reserved for an owner that has no row, reserved long ago.
	ghostName, ghostOwner := "k8s_ghost_drift-ctr_e2e_uid-ghost_0", strings.Repeat("6a05", 16)
	insertName(t, d, "container", ghostName, ghostOwner, time.Now().Add(-time.Hour))

	// The monitors still alive write their exit files (137: SIGKILL); wait
	// for them, so the evidence is in place when the pass looks.
	for _, id := range []string{cKill, cDel, infraCtr} {
		waitFor(t, "exit file of "+id, func() bool { _, err := os.Stat(exitFile(id)); return err == nil })
	}
	time.Sleep(driftGrace + 200*time.Millisecond) // rows the exit watcher just updated grow old

	want := []driftAction{
		{"mark-exited", "container", cKillNoMon, "", "runtime says stopped"},
		{"mark-exited", "container", cDelNoMon, "", "runtime has no such container"},
		{"mark-exited", "pod", netnsPod, "", "its network namespace pin is gone"},
		{"mark-exited", "pod", stalePod, "", "its network namespace pin is gone"},
		{"mark-exited", "pod", infraPod, "", "its infra process has exited"},
		{"forget", "container", cGone, "", "gone from storage and runtime"},
		{"orphan", "container", stranger, "", "in runtime runc, not in storage nor the database"},
		{"clean", "ip", netnsPod, netnsIP, "its pod is not ready"},
		{"clean", "netns", stalePod, stalePin, "its pod is not ready"},
		{"clean", "netns", infraPod, infraPin, "its pod is not ready"},
		{"release", "container", ghostOwner, ghostName, "reserved for " + ghostOwner + ", which has no row"},
	}
	// The exit watcher records the exits that have an exit file as soon as
	// it sees it; should the pass see one first, it must record the same.
	optional := []driftAction{
		{"mark-exited", "container", cKill, "", "runtime says stopped; exit file says 137"},
		{"mark-exited", "container", cDel, "", "runtime has no such container; exit file says 137"},
		{"mark-exited", "container", infraCtr, "", "runtime says stopped; exit file says 137"},
	}

	// A dry run plans the repairs and changes nothing.
	dry := reconcileJSON(t, d, "--dry-run")
	if !dry.DryRun {
		t.Errorf("crispctl reconcile --dry-run reported a real pass")
	}
	checkActions(t, "the dry run", dry, want, optional)
	if st := ctrStatus(ctx, t, d, cKillNoMon); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("after the dry run, %s is %v; want still RUNNING", cKillNoMon, st.State)
	}
	if !listed(t, runcBin, runcRoot, stranger) {
		t.Errorf("the dry run removed %s", stranger)
	}

	first := reconcileJSON(t, d)
	t.Logf("the first pass:\n%s", actionList(first))
	done := checkActions(t, "the first pass", first, want, optional)

	t.Run("runc-kill", func(t *testing.T) {
		// DESIGN: the exit code is the exit file's: conmon saw SIGKILL.
		assertExit(ctx, t, d, cKill, 137, "Error", "")
	})
	t.Run("runc-kill-without-monitor", func(t *testing.T) {
		assertExit(ctx, t, d, cKillNoMon, 255, "Unknown", "runtime says stopped")
		if _, err := os.Stat(exitFile(cKillNoMon)); err == nil {
			t.Errorf("an exit file appeared for %s, whose monitor was killed", cKillNoMon)
		}
		if out, err := runc("state", cKillNoMon); err != nil || !strings.Contains(out, `"status": "stopped"`) {
			t.Errorf("runc state %s = %s, %v; want stopped (the runtime keeps it until RemoveContainer)", cKillNoMon, out, err)
		}
	})
	t.Run("runc-delete", func(t *testing.T) {
		assertExit(ctx, t, d, cDel, 137, "Error", "")
	})
	t.Run("runc-delete-without-monitor", func(t *testing.T) {
		assertExit(ctx, t, d, cDelNoMon, 255, "Unknown", "runtime has no such container")
	})
	t.Run("removed-from-storage", func(t *testing.T) {
		_, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: cGone})
		if status.Code(err) != codes.NotFound {
			t.Errorf("ContainerStatus of the forgotten container = %v; want NotFound", err)
		}
		if n := sqlCount(t, d, "SELECT count(*) FROM containers WHERE id = '"+cGone+"'"); n != 0 {
			t.Errorf("the forgotten container still has %d row", n)
		}
		if n := sqlCount(t, d, "SELECT count(*) FROM names WHERE owner_id = '"+cGone+"'"); n != 0 {
			t.Errorf("the forgotten container still holds %d name", n)
		}
		// What crisp kept of it beside storage and runtime goes too: no
		// CRI call will ever name it again.
		for _, p := range []string{filepath.Join(d.RunDir, "c", cGone), exitFile(cGone)} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s is left after the forget", p)
			}
		}
	})
	t.Run("netns-pin-removed", func(t *testing.T) {
		assertPodState(ctx, t, d, netnsPod, runtimeapi.PodSandboxState_SANDBOX_NOTREADY)
		assertNotAllocated(t, d, netnsIP)
	})
	t.Run("netns-pin-unmounted", func(t *testing.T) {
		assertPodState(ctx, t, d, stalePod, runtimeapi.PodSandboxState_SANDBOX_NOTREADY)
		assertNotAllocated(t, d, staleIP)
		if _, err := os.Lstat(stalePin); err == nil {
			t.Errorf("the stale pin %s is still there", stalePin)
		}
	})
	t.Run("infra-killed", func(t *testing.T) {
		assertPodState(ctx, t, d, infraPod, runtimeapi.PodSandboxState_SANDBOX_NOTREADY)
		if _, err := os.Lstat(infraPin); err == nil {
			t.Errorf("the netns pin %s of the pod whose infra died is still there", infraPin)
		}
		// Its container died with the PID namespace: the kernel's SIGKILL.
		assertExit(ctx, t, d, infraCtr, 137, "Error", "")
	})
	t.Run("unknown-runc-container", func(t *testing.T) {
		if listed(t, runcBin, runcRoot, stranger) {
			t.Errorf("runc still lists the orphan %s", stranger)
		}
		if st := procState(strconv.Itoa(strangerState.PID)); st != "" && st != "Z" {
			t.Errorf("the orphan's process %d is still there, in state %s", strangerState.PID, st)
		}
	})
	t.Run("stale-name", func(t *testing.T) {
		if n := sqlCount(t, d, "SELECT count(*) FROM names WHERE owner_id = '"+ghostOwner+"'"); n != 0 {
			t.Errorf("the stale name is still reserved (%d rows)", n)
		}
	})
	t.Run("journal", func(t *testing.T) {
		// Every repair is an event reconcile.<action> (DESIGN's events; README).
		var got []string
		for _, r := range sqlRows(t, d, "SELECT kind, object_id, type, detail FROM events WHERE type LIKE 'reconcile.%' ORDER BY seq") {
			got = append(got, fmt.Sprint(r["kind"], " ", r["object_id"], " ", r["type"], " ", r["detail"]))
		}
		var expect []string
		for _, a := range done {
			kind, detail := a.object, a.reason
			switch a.kind {
			case "release":
				kind, detail = "name", a.name+": "+a.reason
			case "clean":
				kind, detail = "node", a.object+" "+a.name+": "+a.reason
			}
			expect = append(expect, fmt.Sprint(kind, " ", a.id, " reconcile.", a.kind, " ", detail))
		}
		sort.Strings(got)
		sort.Strings(expect)
		if strings.Join(got, "\n") != strings.Join(expect, "\n") {
			t.Errorf("reconcile events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(expect, "\n"))
		}
		// The lifecycle triggers journal the transitions the repairs made.
		for _, id := range []string{netnsPod, stalePod, infraPod} {
			if n := sqlCount(t, d, "SELECT count(*) FROM events WHERE object_id = '"+id+"' AND type = 'notready'"); n != 1 {
				t.Errorf("pod %s has %d notready events, want 1", id, n)
			}
		}
	})

	// The rows the first pass changed must be old enough for the second
	// to look at them again, else "nothing to do" would prove nothing.
	time.Sleep(driftGrace + 200*time.Millisecond)
	second := reconcileJSON(t, d)
	if len(second.Actions) != 0 {
		t.Errorf("the second pass took %d actions, want none:\n%s", len(second.Actions), actionList(second))
	}
	t.Run("reconcile-runs", func(t *testing.T) {
		rows := sqlRows(t, d, "SELECT trigger, dry_run, actions, counts, errors FROM reconcile_runs ORDER BY id")
		var got []string
		for _, r := range rows {
			got = append(got, fmt.Sprint(r["trigger"], " dry=", r["dry_run"], " actions=", r["actions"], " ", r["counts"], " errors=", r["errors"]))
		}
		counts := map[string]int{}
		for _, a := range done {
			counts[a.kind]++
		}
		countsJSON, _ := json.Marshal(counts) // keys sorted, as the store writes them
		expect := []string{
			"startup dry=0 actions=0 {} errors=",
			"admin dry=0 actions=0 {} errors=", // before the drift
			fmt.Sprintf("admin dry=1 actions=%d %s errors=", len(dry.Actions), dryCounts(dry)),
			fmt.Sprintf("admin dry=0 actions=%d %s errors=", len(done), countsJSON),
			"admin dry=0 actions=0 {} errors=",
		}
		if strings.Join(got, "\n") != strings.Join(expect, "\n") {
			t.Errorf("reconcile_runs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(expect, "\n"))
		}
	})

	t.Run("name-reusable", func(t *testing.T) {
		// The forgotten container's name is free: kubelet can create it again.
		c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: ctrPod, Config: containerConfig("gone", image, "true")})
		if err != nil {
			t.Fatalf("CreateContainer(gone) again = %v", err)
		}
		if c.ContainerId == cGone {
			t.Errorf("the new container got the forgotten one's id")
		}
	})

	t.Run("no-leftovers", func(t *testing.T) {
		// The containers' cgroups, which their runtime made, must go with
		// them: those of the containers the pass repaired (whose monitor
		// was killed, or that runc deleted) and of the orphan included;
		// and a runc pod's own cgroup (its infra process's) with the pod.
		ctrIDs := []string{cGone, stranger, ctrPod, netnsPod, stalePod, infraPod}
		cs, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs.Containers {
			ctrIDs = append(ctrIDs, c.Id)
		}
		for _, id := range []string{ctrPod, netnsPod, stalePod, infraPod} {
			if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
				t.Errorf("StopPodSandbox(%s) = %v", id, err)
			}
			if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
				t.Errorf("RemovePodSandbox(%s) = %v", id, err)
			}
		}
		assertNoPodLeftovers(t, d)
		if out, err := runc("list", "-q"); err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("runc list under %s = %q, %v; want nothing", runcRoot, out, err)
		}
		for _, dir := range []string{"c", "exits", "netns", "pods"} {
			if entries, _ := os.ReadDir(filepath.Join(d.RunDir, dir)); len(entries) != 0 {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("%s/%s holds %v; want nothing", d.RunDir, dir, names)
			}
		}
		for _, what := range []string{"conmon.*" + d.RunDir, "pause --isolate " + d.RunDir} {
			if out, err := exec.Command("pgrep", "-f", "--", what).Output(); err == nil {
				t.Errorf("processes matching %q still run: %s", what, strings.Fields(string(out)))
			}
		}
		if left := cgroupsOf(ctrIDs); len(left) != 0 {
			t.Errorf("cgroups left: %v", left)
		}
		if after := reconcileJSON(t, d); len(after.Actions) != 0 {
			t.Errorf("a pass after the cleanup took %d actions:\n%s", len(after.Actions), actionList(after))
		}
	})
}

// checkActions compares a pass's actions with want (all of them) and
// optional (any of them), reasons included, and returns those taken. An
// action that failed is an error.
func checkActions(t *testing.T, what string, rep *adminpb.ReconcileNowResponse, want, optional []driftAction) []driftAction {
	t.Helper()
	expected := map[string]driftAction{}
	for _, a := range want {
		expected[a.key()] = a
	}
	maybe := map[string]driftAction{}
	for _, a := range optional {
		maybe[a.key()] = a
	}
	var taken []driftAction
	for _, a := range rep.Actions {
		got := driftAction{kind: a.Kind, object: a.Object, id: a.Id, name: a.Name, reason: a.Reason}
		taken = append(taken, got)
		if a.Error != "" {
			t.Errorf("%s: %v failed: %s", what, got, a.Error)
		}
		w, ok := expected[got.key()]
		if !ok {
			w, ok = maybe[got.key()]
		}
		switch {
		case !ok:
			t.Errorf("%s took an unexpected action: %v", what, got)
		case w.reason != got.reason:
			t.Errorf("%s: %s has reason %q, want %q", what, got.key(), got.reason, w.reason)
		}
		delete(expected, got.key())
	}
	for _, a := range expected {
		t.Errorf("%s did not take %v", what, a)
	}
	return taken
}

func actionList(rep *adminpb.ReconcileNowResponse) string {
	var lines []string
	for _, a := range rep.Actions {
		lines = append(lines, fmt.Sprintf("  %s %s %s %s: %s %s", a.Kind, a.Object, a.Id, a.Name, a.Reason, a.Error))
	}
	return strings.Join(lines, "\n")
}

// dryCounts is the counts JSON a dry run records: planned actions by kind.
func dryCounts(rep *adminpb.ReconcileNowResponse) string {
	counts := map[string]int{}
	for _, a := range rep.Actions {
		counts[a.Kind]++
	}
	b, _ := json.Marshal(counts)
	return string(b)
}

// reconcileJSON runs `crispctl reconcile --json` and decodes its report.
func reconcileJSON(t *testing.T, d *harness.Daemon, args ...string) *adminpb.ReconcileNowResponse {
	t.Helper()
	out, errOut, err := d.Crispctl(append([]string{"reconcile", "--json"}, args...)...)
	if err != nil {
		t.Fatalf("crispctl reconcile --json %v: %v: %s", args, err, errOut)
	}
	rep := &adminpb.ReconcileNowResponse{}
	if err := protojson.Unmarshal([]byte(out), rep); err != nil {
		t.Fatalf("crispctl reconcile --json: %v: %s", err, out)
	}
	return rep
}

// sqlRows runs a read-only query with `crispctl sql --json`.
func sqlRows(t *testing.T, d *harness.Daemon, query string) []map[string]any {
	t.Helper()
	out, errOut, err := d.Crispctl("sql", "--json", query)
	if err != nil {
		t.Fatalf("crispctl sql %q: %v: %s", query, err, errOut)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("crispctl sql --json %q: %v: %s", query, err, out)
	}
	return rows
}

// sqlCount runs a query of one number.
func sqlCount(t *testing.T, d *harness.Daemon, query string) int {
	t.Helper()
	rows := sqlRows(t, d, query)
	if len(rows) != 1 || len(rows[0]) != 1 {
		t.Fatalf("crispctl sql %q = %v, want one value", query, rows)
	}
	for _, v := range rows[0] {
		if n, ok := v.(float64); ok {
			return int(n)
		}
	}
	t.Fatalf("crispctl sql %q = %v, want a number", query, rows)
	return 0
}

// insertName writes a name row straight into crispd's database, as a
// crash between reserving a name and writing its owner's row could leave
// one. crispctl sql is read-only, so the file is opened here; SQLite's
// locks (WAL) let this process and crispd write in turn.
func insertName(t *testing.T, d *harness.Daemon, kind, name, owner string, at time.Time) {
	t.Helper()
	conn, err := sql.Open("sqlite", "file:"+d.Database()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Exec("INSERT INTO names (kind, name, owner_id, reserved_at) VALUES (?, ?, ?, ?)",
		kind, name, owner, at.UnixNano()); err != nil {
		t.Fatalf("insert a stale name: %v", err)
	}
}

// removeFromStorage removes container id's record from crispd's container
// storage through a store of this process's own over the same graph and
// run roots (c/storage's file locks let processes share a store). The
// store is not shut down: that could unmount the driver's home, which
// crispd's store shares.
func removeFromStorage(t *testing.T, d *harness.Daemon, id string) {
	t.Helper()
	st, err := storage.Open(storage.Config{Driver: "overlay", GraphRoot: filepath.Join(d.StateDir, "storage"),
		RunRoot: filepath.Join(d.RunDir, "storage")}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open crispd's storage: %v", err)
	}
	if _, err := st.Record(id); err != nil {
		t.Fatalf("container %s is not in storage: %v", id, err)
	}
	if err := st.RemoveContainer(id); err != nil {
		t.Fatalf("remove %s from storage: %v", id, err)
	}
	if _, err := st.Record(id); err == nil {
		t.Fatalf("container %s is still in storage", id)
	}
}

// killMonitor SIGKILLs the conmon of container id, leaving the container
// running without anyone to write its exit file.
func killMonitor(t *testing.T, d *harness.Daemon, id string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.RunDir, "c", id, "conmon.pid"))
	if err != nil {
		t.Fatalf("conmon pid of %s: %v", id, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("conmon pid of %s: %v", id, err)
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != "conmon" {
		t.Fatalf("pid %d of %s's conmon.pid is %q, not conmon", pid, id, comm)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill conmon %d: %v", pid, err)
	}
	p := strconv.Itoa(pid)
	waitFor(t, "conmon "+p+" to die", func() bool { st := procState(p); return st == "" || st == "Z" })
}

// startStranger runs `sleep 1000` from a static busybox as container id in
// runc root root: a container crisp never made, with no storage record, no
// row and no monitor.
func startStranger(t *testing.T, runcBin, busyboxBin, root, id string) {
	t.Helper()
	bundle := t.TempDir()
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(busyboxBin, filepath.Join(bundle, "rootfs", "bin", "busybox")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(runcBin, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v: %s", err, out)
	}
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/bin/busybox", "sleep", "1000"}
	if b, err = json.Marshal(spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// The container inherits runc's stdio: a file, never a pipe that
	// would keep this call waiting as long as the container runs.
	logf, err := os.Create(filepath.Join(bundle, "runc.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(runcBin, "--root", root, "run", "--detach", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = logf, logf
	t.Cleanup(func() { exec.Command(runcBin, "--root", root, "delete", "--force", id).Run() })
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logf.Name())
		t.Fatalf("runc run %s: %v: %s", id, err, out)
	}
}

// cgroupsOf lists the cgroups, on every hierarchy, named after one of ids
// (crisp's /crisp/<id> and <parent>/crisp-<id>, runc's own /<id>).
func cgroupsOf(ids []string) []string {
	want := map[string]bool{}
	for _, id := range ids {
		want[id], want["crisp-"+id] = true, true
	}
	var out []string
	filepath.WalkDir("/sys/fs/cgroup", func(p string, e os.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return nil
		}
		if want[e.Name()] {
			out = append(out, p)
		}
		if strings.Count(strings.TrimPrefix(p, "/sys/fs/cgroup"), "/") >= 4 {
			return filepath.SkipDir
		}
		return nil
	})
	return out
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

func ctrStatus(ctx context.Context, t *testing.T, d *harness.Daemon, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	r, err := d.Runtime().ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStatus(%s) = %v", id, err)
	}
	return r.Status
}

// assertExit checks that ContainerStatus shows container id exited with
// code and reason, and, when message is not "", that message.
func assertExit(ctx context.Context, t *testing.T, d *harness.Daemon, id string, code int32, reason, message string) {
	t.Helper()
	st := ctrStatus(ctx, t, d, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != code || st.Reason != reason ||
		message != "" && st.Message != message || st.FinishedAt == 0 {
		t.Errorf("container %s is %v, exit %d, %q, %q, finished at %d; want EXITED, exit %d, %q, %q", id, st.State,
			st.ExitCode, st.Reason, st.Message, st.FinishedAt, code, reason, message)
	}
}

// waitExited waits until ContainerStatus shows container id exited with code.
func waitExited(ctx context.Context, t *testing.T, d *harness.Daemon, id string, code int32) {
	t.Helper()
	waitFor(t, fmt.Sprintf("container %s to exit with %d", id, code), func() bool {
		st := ctrStatus(ctx, t, d, id)
		return st.State == runtimeapi.ContainerState_CONTAINER_EXITED && st.ExitCode == code
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func assertPodState(ctx context.Context, t *testing.T, d *harness.Daemon, id string, want runtimeapi.PodSandboxState) {
	t.Helper()
	r, err := d.Runtime().PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatalf("PodSandboxStatus(%s) = %v", id, err)
	}
	if r.Status.State != want {
		t.Errorf("pod %s is %v, want %v", id, r.Status.State, want)
	}
}

// podIP is the pod's IP as PodSandboxStatus reports it.
func podIP(ctx context.Context, t *testing.T, d *harness.Daemon, id string) string {
	t.Helper()
	r, err := d.Runtime().PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatalf("PodSandboxStatus(%s) = %v", id, err)
	}
	ip := r.Status.GetNetwork().GetIp()
	if ip == "" {
		t.Fatalf("pod %s has no IP", id)
	}
	return ip
}

// assertNotAllocated checks that host-local holds no allocation of ip.
func assertNotAllocated(t *testing.T, d *harness.Daemon, ip string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(d.Dir, "cni-ipam", "crisp-e2e", ip)); err == nil {
		t.Errorf("IP %s is still allocated", ip)
	}
}
