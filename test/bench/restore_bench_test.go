//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
	"github.com/crisp-cri/crisp/test/images"
	"github.com/crisp-cri/crisp/test/registry"
)

// The node the restore benchmark restarts crispd on: restorePods runc pods
// of restorePerPod running containers each.
const (
	restorePods       = 20
	restorePerPod     = 10
	restoreContainers = restorePods * restorePerPod
	// restoreWorkers is how many pods are set up (and torn down) at once.
	restoreWorkers = 4
	// restorePoll is how often the socket and ListContainers are polled.
	restorePoll = 5 * time.Millisecond
)

// BenchmarkStartupRestore (issue #5): crispd restarts after kill -9 on a
// node running 200 containers (20 runc pods x 10 busybox sleeps). Figures,
// each the median over the restarts:
//
//   - restore-to-list-ms: from just before the harness starts the new
//     crispd process (the harness has no start-time hook, so the clock
//     includes fork/exec and Go start-up) to the first CRI ListContainers
//     over the socket that returns all 200 containers running. The socket
//     is polled every 5 ms until it accepts, then ListContainers every 5 ms.
//   - socket-ms: from the same start to the CRI socket accepting.
//   - startup-pass-ms: the startup reconcile pass, as recorded in
//     reconcile_history (the socket opens before it, or after it for a
//     lost database).
//   - admin-pass-ms: a `crispctl reconcile` pass once restored, as
//     recorded in reconcile_history.
//   - ns/op: the mean timed part of a restart: restore-to-list plus what
//     remains of the harness's own 50 ms poll of the socket.
//
// Sub-benchmarks: "sigkill" restarts on the database as the killed crispd
// left it; "lost-db" also moves the database aside before the restart, so
// that the startup pass rebuilds every row (20 pods + 200 containers) from
// the node. Each logs where the time went (medians, from crispd's debug
// log and reconcile_history) and every restart's figures.
//
// The pods are made once (~30 s) and shared by both sub-benchmarks; each
// iteration is one kill and restart, ~1 s with the database and ~2.5 s
// without (admin pass and checks included). Every restart is real up to
// restoreMaxIterations per sub-benchmark; `make bench` (-benchtime 20x)
// runs all 20 in about two minutes. Alone:
//
//	CGO_ENABLED=1 CRISP_BIN_DIR=bin go test \
//	    -tags containers_image_openpgp,exclude_graphdriver_btrfs \
//	    -run '^$' -bench BenchmarkStartupRestore -benchtime 20x ./test/bench/
func BenchmarkStartupRestore(b *testing.B) {
	harness.RequireRoot(b)
	// Registered before the daemon, so it runs after crispd has stopped.
	var dir, runDir string
	b.Cleanup(func() { checkNodeClean(b, dir, runDir) })
	d := harness.Start(b)
	dir, runDir = d.Dir, d.RunDir
	ref := pullBusybox(b, d)
	start := time.Now()
	makeRestorePods(b, d, ref)
	b.Logf("made %d pods x %d running containers in %s", restorePods, restorePerPod, time.Since(start).Round(time.Millisecond))
	// Runs before the harness stops crispd: every pod goes through the CRI.
	b.Cleanup(func() { removeRestorePods(b, d) })

	b.Run("sigkill", func(b *testing.B) { restoreLoop(b, d, false) })
	b.Run("lost-db", func(b *testing.B) { restoreLoop(b, d, true) })
}

// restoreMaxIterations caps the restarts of each sub-benchmark whatever
// -benchtime asks: iterations past it do nothing (ns/op and the figures
// are over the real restarts only). 20 is what `make bench` asks, and
// keeps test/bench inside go test's default 10-minute timeout.
const restoreMaxIterations = 20

// restoreLoop kills and restarts crispd b.N times (at most
// restoreMaxIterations), moving the database aside first if lostDB.
func restoreLoop(b *testing.B, d *harness.Daemon, lostDB bool) {
	var rs []restart
	n := 0
	for b.Loop() {
		n++
		if n > restoreMaxIterations {
			continue
		}
		b.StopTimer()
		if err := d.Kill(); err != nil {
			b.Fatalf("kill -9 crispd: %v", err)
		}
		if lostDB {
			for _, suffix := range []string{"", "-wal", "-shm"} {
				if err := os.Rename(d.Database()+suffix, d.Database()+".lost"+suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
					b.Fatal(err)
				}
			}
		}
		b.StartTimer()

		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		watch := watchRestore(ctx, d.Socket(), t0)
		d.Restart()
		w := <-watch
		cancel()

		b.StopTimer()
		if w.err != nil {
			b.Fatalf("restart %d: %v\ncrispd log:\n%s", n, w.err, d.Log.String())
		}
		checkPodsReady(b, d)
		pass := lastPass(b, d, "startup")
		if lostDB && !strings.Contains(pass.counts, fmt.Sprintf(`"adopt":%d`, restorePods+restoreContainers)) {
			b.Errorf("restart %d on a lost database: startup pass counts %s, want %d adopted", n, pass.counts, restorePods+restoreContainers)
		}
		if !lostDB && pass.actions != 0 {
			b.Logf("restart %d: the startup pass took %d actions: %s", n, pass.actions, pass.counts)
		}
		cmdStart := time.Now()
		if out, stderr, err := d.Crispctl("reconcile"); err != nil {
			b.Fatalf("crispctl reconcile: %v\n%s%s", err, out, stderr)
		}
		cmdTook := time.Since(cmdStart)
		admin := lastPass(b, d, "admin")
		if admin.id <= pass.id {
			b.Fatalf("no admin pass recorded after the startup pass %d (latest admin pass: %d)", pass.id, admin.id)
		}
		r := startupPhases(b, d.Log.String(), t0, pass)
		r.list, r.socket, r.admin, r.adminCmd = w.list, w.socket, admin.duration, cmdTook
		r.toList = w.list - r.serving
		rs = append(rs, r)
		b.StartTimer()
	}
	if len(rs) == 0 {
		return
	}
	// Per restart, whatever the cap left of b.N: the timed part is the
	// restart until the list, and the harness's own wait for the socket.
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(len(rs)), "ns/op")
	med := func(f func(restart) time.Duration) time.Duration {
		ds := make([]time.Duration, len(rs))
		for i, r := range rs {
			ds[i] = f(r)
		}
		slices.Sort(ds)
		return ds[(len(ds)-1)/2]
	}
	list, socket := med(func(r restart) time.Duration { return r.list }), med(func(r restart) time.Duration { return r.socket })
	pass, admin := med(func(r restart) time.Duration { return r.pass }), med(func(r restart) time.Duration { return r.admin })
	b.ReportMetric(msec(list), "restore-to-list-ms")
	b.ReportMetric(msec(socket), "socket-ms")
	b.ReportMetric(msec(pass), "startup-pass-ms")
	b.ReportMetric(msec(admin), "admin-pass-ms")
	if n > restoreMaxIterations {
		b.Logf("capped at %d restarts (restoreMaxIterations) of the %d asked", restoreMaxIterations, n)
	}
	b.Logf("medians of %d restarts, from the exec of crispd: first log line at %s; pass starts %s later; startup pass %s (runc list %s); "+
		"serving %s after it; socket accepts at %s; all %d listed running at %s; admin pass %s (crispctl reconcile %s)",
		len(rs), ms(med(func(r restart) time.Duration { return r.firstLog })), ms(med(func(r restart) time.Duration { return r.open })),
		ms(pass), ms(med(func(r restart) time.Duration { return r.runcList })), ms(med(func(r restart) time.Duration { return r.toServing })),
		ms(socket), restoreContainers, ms(list), ms(admin), ms(med(func(r restart) time.Duration { return r.adminCmd })))
	var lists, passes, admins []string
	for _, r := range rs {
		lists = append(lists, fmt.Sprintf("%.0f", msec(r.list)))
		passes = append(passes, fmt.Sprintf("%.0f", msec(r.pass)))
		admins = append(admins, fmt.Sprintf("%.0f", msec(r.admin)))
	}
	b.Logf("each restart (ms): restore-to-list %s; startup pass %s; admin pass %s",
		strings.Join(lists, " "), strings.Join(passes, " "), strings.Join(admins, " "))
}

// restart is where one restart's time went, each since the exec of
// crispd unless said otherwise.
type restart struct {
	firstLog  time.Duration // crispd's first log line
	open      time.Duration // from then to the start of the startup pass
	pass      time.Duration // the startup pass, as recorded
	runcList  time.Duration // `runc list` within the pass, from crispd's debug log
	toServing time.Duration // from the end of the pass to "crispd serving"
	serving   time.Duration // "crispd serving"
	socket    time.Duration // the CRI socket accepts
	list      time.Duration // ListContainers returns all running
	toList    time.Duration // from "crispd serving" to that list
	admin     time.Duration // the admin pass, as recorded
	adminCmd  time.Duration // `crispctl reconcile`, the whole command
}

// restoreTimes is what watchRestore saw, measured from the start it was
// given.
type restoreTimes struct {
	socket time.Duration // the CRI socket accepted a connection
	list   time.Duration // ListContainers returned every container running
	err    error
}

// watchRestore polls sock every restorePoll until it accepts, then
// ListContainers every restorePoll until restoreContainers are running,
// and sends the times since t0. A fresh connection is made after a failed
// call, so that gRPC's reconnect backoff never stretches the poll.
func watchRestore(ctx context.Context, sock string, t0 time.Time) <-chan restoreTimes {
	out := make(chan restoreTimes, 1)
	go func() {
		var r restoreTimes
		defer func() { out <- r }()
		tick := time.NewTicker(restorePoll)
		defer tick.Stop()
		wait := func(last error) bool {
			select {
			case <-ctx.Done():
				r.err = fmt.Errorf("%w; last: %v", ctx.Err(), last)
				return false
			case <-tick.C:
				return true
			}
		}
		var dialer net.Dialer
		for {
			c, err := dialer.DialContext(ctx, "unix", sock)
			if err == nil {
				r.socket = time.Since(t0)
				c.Close()
				break
			}
			if !wait(err) {
				return
			}
		}
		var conn *grpc.ClientConn
		defer func() {
			if conn != nil {
				conn.Close()
			}
		}()
		for {
			var last error
			if conn == nil {
				conn, last = grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
			}
			if last == nil {
				resp, err := runtimeapi.NewRuntimeServiceClient(conn).ListContainers(ctx, &runtimeapi.ListContainersRequest{})
				if err == nil {
					running := 0
					for _, c := range resp.Containers {
						if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
							running++
						}
					}
					if running == restoreContainers {
						r.list = time.Since(t0)
						return
					}
					last = fmt.Errorf("ListContainers: %d containers, %d running; want %d running", len(resp.Containers), running, restoreContainers)
				} else {
					last = err
					conn.Close()
					conn = nil
				}
			}
			if !wait(last) {
				return
			}
		}
	}()
	return out
}

// pullBusybox pushes the busybox test image to an in-process registry and
// pulls it into crispd.
func pullBusybox(b *testing.B, d *harness.Daemon) string {
	b.Helper()
	reg := registry.Start(b)
	img, err := images.Busybox()
	if err != nil {
		b.Fatal(err)
	}
	reg.Push(b, "bench/busybox:1.0", img)
	ref := reg.Ref("bench/busybox:1.0")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.Images().PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		b.Fatalf("pull %s: %v", ref, err)
	}
	return ref
}

// makeRestorePods runs restorePods pods of restorePerPod sleeping
// containers, restoreWorkers pods at a time.
func makeRestorePods(b *testing.B, d *harness.Daemon, image string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rt := d.Runtime()
	makePod := func(i int) error {
		name := fmt.Sprintf("restore-%02d", i)
		pc := &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "bench", Uid: "uid-" + name},
			Labels:   map[string]string{"bench": "restore"},
			Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}},
		}
		pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
		if err != nil {
			return fmt.Errorf("RunPodSandbox(%s): %w", name, err)
		}
		for j := range restorePerPod {
			cc := &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: fmt.Sprintf("c%d", j)},
				Image:    &runtimeapi.ImageSpec{Image: image},
				Command:  []string{"sleep", "86400"},
			}
			c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cc, SandboxConfig: pc})
			if err != nil {
				return fmt.Errorf("CreateContainer(%s/c%d): %w", name, j, err)
			}
			if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
				return fmt.Errorf("StartContainer(%s/c%d): %w", name, j, err)
			}
		}
		return nil
	}
	if err := inParallel(restorePods, makePod); err != nil {
		b.Fatal(err)
	}
}

// removeRestorePods stops and removes every pod through the CRI, then
// checks that crispd lists nothing and that no runc container, conmon or
// pod infra process of this daemon is left.
func removeRestorePods(b *testing.B, d *harness.Daemon) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rt := d.Runtime()
	// A sub-benchmark that failed between kill and restart left crispd
	// down: bring it back, so that the pods still go through the CRI.
	vctx, vcancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := rt.Version(vctx, &runtimeapi.VersionRequest{})
	vcancel()
	if err != nil {
		b.Logf("cleanup: crispd does not answer (%v); starting it again", err)
		d.Restart()
	}
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		b.Errorf("cleanup: ListPodSandbox: %v", err)
		return
	}
	err = inParallel(len(pods.Items), func(i int) error {
		id := pods.Items[i].Id
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			return fmt.Errorf("StopPodSandbox(%s): %w", id, err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			return fmt.Errorf("RemovePodSandbox(%s): %w", id, err)
		}
		return nil
	})
	if err != nil {
		b.Errorf("cleanup: %v", err)
	}
	if left, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err != nil || len(left.Items) > 0 {
		b.Errorf("cleanup: pods left: %v, %v", left, err)
	}
	if left, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil || len(left.Containers) > 0 {
		b.Errorf("cleanup: containers left: %v, %v", left, err)
	}
	out, err := exec.Command("runc", "--root", filepath.Join(d.RunDir, "runc"), "list", "-q").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		b.Errorf("cleanup: runc containers left under %s/runc: %s %v", d.RunDir, out, err)
	}
	// A monitor exits just after its container; give it a moment.
	var procs []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if procs = processesMentioning(d.RunDir); len(procs) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(procs) > 0 {
		b.Errorf("cleanup: processes of crispd's run dir left (conmon, pod infra):\n%s", strings.Join(procs, "\n"))
	}
}

// checkNodeClean, after crispd stopped, fails b if a process still names
// the daemon's dirs or a mount is left below them (which it undoes).
func checkNodeClean(b *testing.B, dirs ...string) {
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		if procs := processesMentioning(dir); len(procs) > 0 {
			b.Errorf("processes left naming %s:\n%s", dir, strings.Join(procs, "\n"))
		}
		if m := unmountUnder(b, dir); len(m) > 0 {
			b.Errorf("mounts left under %s: %v", dir, m)
		}
	}
}

// processesMentioning lists "pid: cmdline" of every other process whose
// command line names a path below dir.
func processesMentioning(dir string) []string {
	s := strings.TrimSuffix(dir, "/") + "/"
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		line := strings.TrimSpace(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		if strings.Contains(line, s) {
			out = append(out, fmt.Sprintf("%d: %s", pid, line))
		}
	}
	return out
}

// inParallel runs f(0..n-1), restoreWorkers at a time, and joins the
// errors.
func inParallel(n int, f func(i int) error) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	next := make(chan int)
	for range restoreWorkers {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

// checkPodsReady fails b unless crispd lists every pod ready.
func checkPodsReady(b *testing.B, d *harness.Daemon) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pods, err := d.Runtime().ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		b.Fatal(err)
	}
	ready := 0
	for _, p := range pods.Items {
		if p.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			ready++
		}
	}
	if len(pods.Items) != restorePods || ready != restorePods {
		b.Fatalf("after the restart: %d pods, %d ready; want %d ready", len(pods.Items), ready, restorePods)
	}
}

// pass is one row of reconcile_history.
type pass struct {
	id       int
	started  time.Time
	duration time.Duration
	actions  int
	counts   string
}

// lastPass reads the newest real (not dry-run) pass of trigger.
func lastPass(b *testing.B, d *harness.Daemon, trigger string) pass {
	b.Helper()
	q := fmt.Sprintf("SELECT id, started, duration_ms, actions, counts FROM reconcile_history WHERE trigger = '%s' AND dry_run = 0 LIMIT 1", trigger)
	out, stderr, err := d.Crispctl("sql", "--csv", q)
	if err != nil {
		b.Fatalf("crispctl sql: %v\n%s", err, stderr)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) != 2 || len(rows[1]) != 5 {
		b.Fatalf("crispctl sql %q = %q, %v; want a header and one row of 5", q, out, err)
	}
	row := rows[1]
	var p pass
	var errs []error
	p.id, err = strconv.Atoi(row[0])
	errs = append(errs, err)
	p.started, err = time.Parse(time.RFC3339Nano, row[1])
	errs = append(errs, err)
	msec, err := strconv.ParseFloat(row[2], 64)
	errs = append(errs, err)
	p.duration = time.Duration(msec * float64(time.Millisecond))
	p.actions, err = strconv.Atoi(row[3])
	errs = append(errs, err)
	p.counts = row[4]
	if err := errors.Join(errs...); err != nil {
		b.Fatalf("reconcile_history row %q: %v", row, err)
	}
	return p
}

// startupPhases splits a restart, since its t0, by crispd's log and the
// startup pass p: crispd's first log line, the opening of the database
// (quick_check after a crash), storage, network and runtimes until the
// pass starts, the runtime listing within the pass, and from the end of
// the pass to "crispd serving".
func startupPhases(b *testing.B, log string, t0 time.Time, p pass) restart {
	b.Helper()
	var first, serving time.Time
	var runcList time.Duration
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Time    time.Time     `json:"time"`
			Msg     string        `json:"msg"`
			Runtime string        `json:"runtime"`
			Args    string        `json:"args"`
			Took    time.Duration `json:"took"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Time.IsZero() {
			continue
		}
		if first.IsZero() {
			first = line.Time
		}
		if line.Msg == "runtime command" && line.Runtime == "runc" && strings.HasPrefix(line.Args, "list") {
			runcList += line.Took
		}
		if line.Msg == "startup reconcile done" {
			break
		}
	}
	for sc.Scan() {
		var line struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "crispd serving" {
			serving = line.Time
			break
		}
	}
	if first.IsZero() || serving.IsZero() {
		b.Fatalf("crispd's log has no \"startup reconcile done\" then \"crispd serving\":\n%s", log)
	}
	return restart{
		firstLog:  first.Sub(t0),
		open:      p.started.Sub(first),
		pass:      p.duration,
		runcList:  runcList,
		toServing: serving.Sub(p.started.Add(p.duration)),
		serving:   serving.Sub(t0),
	}
}

// msec is d in milliseconds, to the microsecond.
func msec(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ms formats d in milliseconds with one decimal.
func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", msec(d)) }
