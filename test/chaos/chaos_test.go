// Package chaos kills crispd with SIGKILL while a workload of pod and
// container calls runs — at random moments, and at each failpoint of the
// CRI calls (package cri/failpoint) — and after every restart checks that
// the database, container storage, the runtimes, the monitors, the mounts
// and the pod network all agree, that nothing leaked, and that every
// container that was running still runs. One daemon state is kept across
// all kills. It needs root; nothing imports it.
package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/failpoint"
	"github.com/crisp-cri/crisp/test/harness"
)

const (
	defaultIterations = 100
	maxKillDelay      = 2500 * time.Millisecond // random kills land within this much workload
	failpointBudget   = 15 * time.Second        // workload time for an armed failpoint to be hit
	callTimeout       = 10 * time.Second        // one CRI call; kubelet's own is 2 minutes
)

// The chaos daemon's reconciler: no periodic pass (the test asks for one
// after each restart, when no call is in flight), and no grace, so that
// the passes after a restart repair everything the kill left.
const reconcilerTOML = `[reconciler]
interval = "1h"
grace = "1ms"`

func TestChaos(t *testing.T) {
	harness.RequireRoot(t)
	for _, tool := range []string{"runc", "conmon", "findmnt", "go"} {
		harness.RequireTool(t, tool)
	}
	n := max(envInt(t, "CRISP_CHAOS_ITERATIONS", defaultIterations), 1)
	seed := uint64(envInt(t, "CRISP_CHAOS_SEED", int(time.Now().UnixNano()&0xffffffff)))
	t.Setenv("CRISP_BIN_DIR", buildFailpointBins(t))

	c := &chaos{t: t, rng: rand.New(rand.NewPCG(seed, seed)), sum: newSummary(seed), ids: map[string]bool{}, signalled: map[string]bool{}}
	t.Cleanup(func() {
		if c.d == nil {
			return // crispd never started
		}
		c.countRepairs()
		t.Log(c.sum)
		if len(c.sum.order) > 0 {
			t.Errorf("%d invariant violations (%s); see the summary above", len(c.sum.order), counts(c.sum.byKind()))
		}
	})
	c.d = harness.Start(t, harness.WithTOML(reconcilerTOML))
	t.Cleanup(c.sweep) // before the harness removes the run dir and the runtimes' state in it
	c.env = slices.Clone(c.d.Env)
	// A mixed workload: some pods are untrusted, on the pinned gVisor of
	// `make deps`. CRISP_CHAOS_RUNSC=0 leaves gVisor out (for a host that
	// only has Debian's runsc 0.0~20221219, whose sentry panics under
	// this churn: nil pointer in pgalloc.(*MemoryFile).findReclaimable).
	gvisor := os.Getenv("CRISP_CHAOS_RUNSC") != "0"
	if gvisor {
		harness.RequireTool(t, "runsc")
	}
	c.wl = &workload{rng: c.rng, image: pullBusybox(t, c.d), logRoot: filepath.Join(c.d.Dir, "logs"), gvisor: gvisor}
	c.conn, c.rt = dial(t, c.d)
	c.startKeepers()

	plans := makePlans(n, c.wl.gvisor)
	c.d.Stop()
	c.start(plans[0])
	var pending *op
	for i, p := range plans {
		it := fmt.Sprintf("iteration %d (%s)", i+1, p)
		k := c.runUntilKilled(p, pending)
		next := plan{}
		if i+1 < len(plans) {
			next = plans[i+1]
		}
		vs := append(k.violations, c.afterKill(k, next)...)
		c.sum.iterations++
		c.report(it, k, vs)
		pending = k.interrupted
	}
	c.report("final teardown", kill{how: "none"}, c.teardown(pending))
}

// chaos is one run: a daemon, its workload and what was found.
type chaos struct {
	t    *testing.T
	d    *harness.Daemon
	env  []string // crispd's environment without a failpoint
	rng  *rand.Rand
	wl   *workload
	sum  *summary
	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
	ids  map[string]bool // every pod and container id this daemon has had
	// signalled are the containers and pods a call asked to stop or
	// remove (op.signals), for the exit-code invariant.
	signalled map[string]bool
	// killedLog is the log of the crispd the last iteration killed: with
	// the restarted one's, what a violation's object went through.
	killedLog string
}

// plan is how one iteration's crispd is to die.
type plan struct {
	failpoint string // "": SIGKILL from the test at a random moment
	nth       int    // the hit of the failpoint that kills
}

func (p plan) String() string {
	switch {
	case p.failpoint == "":
		return "SIGKILL at a random moment"
	case p.nth > 1:
		return fmt.Sprintf("failpoint %s, hit %d", p.failpoint, p.nth)
	}
	return "failpoint " + p.failpoint
}

// makePlans alternates random kills with failpoints, each failpoint in
// turn, the first time at its first hit, the next time at its second.
// Without runsc, no pod has an infra container to stop at.
func makePlans(n int, gvisor bool) []plan {
	names := slices.Clone(failpoint.Names)
	if !gvisor {
		names = slices.DeleteFunc(names, func(s string) bool { return strings.HasPrefix(s, "pod.infra.") })
	}
	var ps []plan
	for i := range n {
		if i%2 == 0 {
			ps = append(ps, plan{})
			continue
		}
		k := i / 2
		ps = append(ps, plan{failpoint: names[k%len(names)], nth: 1 + k/len(names)%2})
	}
	return ps
}

// start starts crispd again, armed for p.
func (c *chaos) start(p plan) {
	c.d.Env = slices.Clone(c.env)
	if p.failpoint != "" {
		c.d.Env = append(c.d.Env, fmt.Sprintf("%s=%s@%d", failpoint.EnvVar, p.failpoint, p.nth))
	}
	c.d.Restart()
	c.conn.Close()
	c.conn, c.rt = dial(c.t, c.d)
}

// kill is how one iteration ended.
type kill struct {
	how         string // "random", a failpoint name, "crash" or "unreached"
	interrupted *op    // the call in flight, to be retried; nil between calls
	violations  []violation
}

// runUntilKilled retries the call the last kill interrupted, as kubelet
// would, then runs the workload until crispd dies.
func (c *chaos) runUntilKilled(p plan, pending *op) kill {
	var timer *killTimer
	if p.failpoint == "" {
		timer = startKillTimer(c.d, time.Duration(c.rng.Int64N(int64(maxKillDelay))))
	}
	var k kill
	if pending != nil {
		err := c.retry(*pending)
		if died(err) {
			k.interrupted = pending
			return c.reap(k, p, timer, "the retry of "+pending.String())
		}
		if err != nil {
			k.violations = append(k.violations, violation{kind: kindRetry, msg: fmt.Sprintf("kubelet's retry of %s, interrupted by the last kill, failed: %v", pending, err)})
		}
	}
	deadline := time.Now().Add(failpointBudget)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		w, err := list(ctx, c.rt)
		cancel()
		if died(err) {
			return c.reap(k, p, timer, "listing")
		}
		if err != nil {
			k.violations = append(k.violations, violation{kind: kindOpError, msg: fmt.Sprintf("listing pods and containers: %v", err)})
			time.Sleep(100 * time.Millisecond)
			continue
		}
		o := c.wl.next(w, p.failpoint)
		ctx, cancel = context.WithTimeout(context.Background(), callTimeout)
		err = c.do(ctx, o)
		cancel()
		if died(err) {
			k.interrupted = &o
			return c.reap(k, p, timer, o.String())
		}
		if err != nil {
			k.violations = append(k.violations, violation{kind: kindOpError, msg: fmt.Sprintf("%s = %v", o, err)})
		} else {
			c.sum.calls[o.kind]++
		}
		if p.failpoint != "" && time.Now().After(deadline) {
			c.d.Kill()
			k.how = "unreached"
			k.violations = append(k.violations, violation{kind: kindFailpt, msg: fmt.Sprintf("%s was not reached in %s of workload", p, failpointBudget)})
			return k
		}
	}
}

// retry makes the call a kill interrupted again, as kubelet would: a
// create only into a pod that is still ready, a start only of a container
// still created; stops and removals always.
func (c *chaos) retry(o op) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	switch o.kind {
	case opCreate:
		st, err := c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: o.podID})
		if died(err) {
			return err
		}
		if err != nil || st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
			return nil
		}
	case opStart:
		st, err := c.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: o.ctrID})
		if died(err) {
			return err
		}
		if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_CREATED {
			return nil
		}
	}
	c.sum.retries++
	err := c.do(ctx, o)
	if err == nil {
		c.sum.calls[o.kind]++
	}
	return err
}

// do makes the workload's call o, noting first what it may kill.
func (c *chaos) do(ctx context.Context, o op) error {
	if id := o.signals(); id != "" {
		c.signalled[id] = true
	}
	return o.do(ctx, c.rt)
}

// died tells a call that failed because crispd died: its connection went.
// crisp itself never answers Unavailable.
func died(err error) bool { return status.Code(err) == codes.Unavailable }

// reap makes sure crispd is dead and tells how it died: by the test's
// timer, at the armed failpoint (which says so on stderr), or by itself.
func (c *chaos) reap(k kill, p plan, timer *killTimer, during string) kill {
	fired := false
	if timer != nil {
		fired = timer.fired.Load() // before the timer is stopped: did the kill come first?
		timer.halt()
	}
	c.d.Kill() // reaps a crispd that killed itself
	log := c.d.Log.String()
	c.killedLog = log
	switch {
	case p.failpoint == "" && fired:
		k.how = "random"
	case p.failpoint != "" && strings.Contains(log, "crisp failpoint "+p.failpoint+": SIGKILL"):
		k.how = p.failpoint
	default:
		k.how = "crash"
		k.violations = append(k.violations, violation{kind: kindCrash, msg: fmt.Sprintf("crispd died by itself during %s (armed: %s); its log ends:\n%s", during, p, tail(log, 15))})
	}
	return k
}

// report records an iteration's violations and logs the new ones.
func (c *chaos) report(it string, k kill, vs []violation) {
	fresh := c.sum.record(it, vs)
	line := fmt.Sprintf("%s: died: %s", it, k.how)
	if k.interrupted != nil {
		line += ", during " + k.interrupted.String()
	}
	if len(vs) > 0 {
		line += fmt.Sprintf("; %d violations, %d new", len(vs), len(fresh))
	}
	c.t.Log(line)
	for i, v := range fresh {
		if i == 10 {
			c.t.Logf("    … %d more new", len(fresh)-10)
			break
		}
		c.t.Logf("    %s: %s", v.kind, v.msg)
		if v.object != "" {
			c.t.Logf("      the killed crispd's log of %s:\n%s", short(v.object), linesWith(c.killedLog, v.object, 40))
			c.t.Logf("      the restarted crispd's log of %s:\n%s", short(v.object), linesWith(c.d.Log.String(), v.object, 40))
		}
	}
}

// linesWith is the last max lines of log that mention s.
func linesWith(log, s string, max int) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return strings.Join(out, "\n")
}

// killTimer kills crispd once, after a delay, unless halted first.
type killTimer struct {
	fired atomic.Bool
	stop  chan struct{}
	done  chan struct{}
}

func startKillTimer(d *harness.Daemon, delay time.Duration) *killTimer {
	k := &killTimer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(k.done)
		select {
		case <-time.After(delay):
			k.fired.Store(true)
			d.Kill()
		case <-k.stop:
		}
	}()
	return k
}

// halt stops the timer and waits until it is done (and its kill, if it
// fired).
func (k *killTimer) halt() {
	close(k.stop)
	<-k.done
}
