package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/adminpb"
)

// observe looks at the node and remembers every id it has seen, to know
// which of the node's shared cgroups are this daemon's.
func (c *chaos) observe() (node, error) {
	n, err := observe(c.d)
	for _, m := range []map[string]bool{keys(n.sandboxes), keys(n.containers), keys(n.stored), keys(n.live), keys(n.infras), keys(n.monitors)} {
		maps.Copy(c.ids, m)
	}
	return n, err
}

// afterKill looks at what ran when crispd died, starts it again (armed for
// next), reconciles and checks every invariant.
func (c *chaos) afterKill(k kill, next plan) []violation {
	switch k.how {
	case "random", "unreached":
		c.sum.randomKills++
	case "crash":
	default:
		c.sum.failpointKills[k.how]++
	}
	var vs []violation
	atKill, err := c.observe() // crispd is down: this is the node as the kill left it
	if err != nil {
		vs = append(vs, violation{kind: kindObserve, msg: err.Error()})
	}
	must := mustSurvive(atKill, k.interrupted)
	c.start(next)
	vs = append(vs, c.reconcile()...)
	return append(vs, c.check(must, k.how)...)
}

// survivor is a process that ran at a kill and must run after it.
type survivor struct {
	pid     int
	infra   bool // a pod's infra, container or process: its pod must stay ready
	process bool // an infra process, not a runtime container
}

// mustSurvive is every container the runtimes ran at the kill and every
// infra process, of rows at rest (a pod or container still being created
// may be rolled back; one being removed may go), but for those of the pod
// or container the interrupted call was stopping or removing, and the
// quick containers that exit by themselves. Processes without a row are
// the other checks' business.
func mustSurvive(n node, interrupted *op) map[string]survivor {
	spared := func(id, pod string) bool {
		o := interrupted
		switch {
		case o == nil:
			return true
		case o.kind == opStop || o.kind == opRemove:
			return id != o.ctrID
		case o.kind == opStopPod || o.kind == opRemovePod:
			return pod != o.podID
		}
		return true
	}
	podReady := func(id string) bool { return n.sandboxes[id].State == "ready" }
	out := map[string]survivor{}
	for id, l := range n.live {
		if l.Status != "running" {
			continue
		}
		if c, ok := n.containers[id]; ok && settled(c.State) && podReady(c.SandboxID) &&
			!strings.HasPrefix(c.KubeName, "quick") && spared(id, c.SandboxID) {
			out[id] = survivor{pid: l.PID}
		}
		if podReady(id) && spared(id, id) {
			out[id] = survivor{pid: l.PID, infra: true}
		}
	}
	for id, pid := range n.infras {
		if podReady(id) && spared(id, id) {
			out[id] = survivor{pid: pid, infra: true, process: true}
		}
	}
	return out
}

// reconcile runs a reconciler pass through crispctl; a failed action is a
// violation, since no call is in flight to excuse it.
func (c *chaos) reconcile() []violation {
	out, errOut, err := c.d.Crispctl("reconcile", "--json")
	if err != nil {
		return []violation{{kind: kindRecon, msg: fmt.Sprintf("crispctl reconcile: %v: %s", err, errOut)}}
	}
	var r adminpb.ReconcileNowResponse
	if err := protojson.Unmarshal([]byte(out), &r); err != nil {
		return []violation{{kind: kindRecon, msg: fmt.Sprintf("crispctl reconcile --json: %v: %s", err, out)}}
	}
	var vs []violation
	for _, a := range r.Actions {
		if a.Error != "" {
			vs = append(vs, violation{kind: kindRecon, msg: fmt.Sprintf("%s of %s %s (%s) failed: %s", a.Kind, a.Object, short(a.Id), a.Reason, firstLine(a.Error))})
		}
	}
	return vs
}

// check observes the node and checks every invariant and every survivor.
// A container's exit may still be on its way to the database, so while it
// finds violations not seen before it looks again, a few times, until two
// looks agree.
func (c *chaos) check(must map[string]survivor, how string) []violation {
	var vs, prev []violation
	for try := range 4 {
		if try > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		n, err := c.observe()
		if err != nil {
			vs = []violation{{kind: kindObserve, msg: err.Error()}}
			continue
		}
		n.signalled = c.signalled
		vs = append(n.check(c.d.RunDir, c.d.StateDir, func(id string) bool { return c.ids[id] }), c.survivors(n, must, how)...)
		if c.sum.known(vs) || slices.Equal(vs, prev) {
			break
		}
		prev = vs
	}
	return vs
}

// survivors checks that every process in must still runs, as the same
// pid, and that the CRI lists its container running (its pod ready, for
// an infra).
func (c *chaos) survivors(n node, must map[string]survivor, how string) []violation {
	if len(must) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	listed := map[string]string{}
	ctrs, err := c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return []violation{{kind: kindSurvivor, msg: fmt.Sprintf("ListContainers after the restart: %v", err)}}
	}
	for _, ct := range ctrs.Containers {
		listed[ct.Id] = ct.State.String()
	}
	pods, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return []violation{{kind: kindSurvivor, msg: fmt.Sprintf("ListPodSandbox after the restart: %v", err)}}
	}
	for _, p := range pods.Items {
		listed[p.Id] = p.State.String()
	}
	var vs []violation
	for _, id := range sortedKeys(must) {
		before := must[id]
		what, want := "container "+short(id), runtimeapi.ContainerState_CONTAINER_RUNNING.String()
		if c, ok := n.containers[id]; ok {
			what += " (" + c.KubeName + ")"
		}
		if before.infra {
			what, want = "infra of pod "+short(id), runtimeapi.PodSandboxState_SANDBOX_READY.String()
		}
		alive, now := false, "gone"
		if pid, ok := n.infras[id]; before.process && ok {
			alive, now = pid == before.pid, fmt.Sprintf("pid %d", pid)
		}
		if l, ok := n.live[id]; !before.process && ok {
			alive, now = l.Status == "running" && l.PID == before.pid, fmt.Sprintf("%s as pid %d", l.Status, l.PID)
		}
		if !alive {
			vs = append(vs, violation{kind: kindSurvivor, msg: fmt.Sprintf("%s ran as pid %d at the kill (%s); after the restart it is %s", what, before.pid, how, now)})
		}
		if got := listed[id]; got != want {
			vs = append(vs, violation{kind: kindSurvivor, msg: fmt.Sprintf("%s ran at the kill (%s) and after the restart is listed %q, want %s", what, how, got, want)})
		}
	}
	return vs
}

// teardown retries the last interrupted call, removes every pod through
// the CRI, as kubelet would at drain, and checks that nothing is left.
func (c *chaos) teardown(pending *op) []violation {
	var vs []violation
	if pending != nil {
		if err := c.retry(*pending); err != nil {
			vs = append(vs, violation{kind: kindRetry, msg: fmt.Sprintf("kubelet's retry of %s, interrupted by the last kill, failed: %v", pending, err)})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pods, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return append(vs, violation{kind: kindOpError, msg: fmt.Sprintf("ListPodSandbox at teardown: %v", err)})
	}
	for _, p := range pods.Items {
		for _, o := range []op{{kind: opStopPod, podID: p.Id}, {kind: opRemovePod, podID: p.Id}} {
			if err := c.do(ctx, o); err != nil {
				vs = append(vs, violation{kind: kindOpError, msg: fmt.Sprintf("%s at teardown = %v", o, err)})
			}
		}
	}
	vs = append(vs, c.reconcile()...)
	vs = append(vs, c.check(nil, "teardown")...)
	n, err := c.observe()
	if err != nil {
		return append(vs, violation{kind: kindObserve, msg: err.Error()})
	}
	// Rows left creating or removing were reported by the check; a settled
	// row left now means a removal said it succeeded and did not.
	for _, id := range sortedKeys(n.sandboxes) {
		if s := n.sandboxes[id]; settled(s.State) {
			vs = append(vs, violation{kind: kindRowStuck, msg: fmt.Sprintf("pod %s (%s, %s) is left after every pod was removed", short(id), s.Name, s.State)})
		}
	}
	for _, id := range sortedKeys(n.containers) {
		if ct := n.containers[id]; settled(ct.State) {
			vs = append(vs, violation{kind: kindRowStuck, msg: fmt.Sprintf("container %s (%s, %s) is left after every pod was removed", short(id), ct.Name, ct.State)})
		}
	}
	return vs
}

// countRepairs adds up the actions of every reconciler pass, by trigger.
func (c *chaos) countRepairs() {
	var runs []struct {
		Trigger string `json:"trigger"`
		Counts  string `json:"counts"`
	}
	if err := sql(c.d, &runs, "SELECT trigger, counts FROM reconcile_runs WHERE dry_run = 0"); err != nil {
		c.t.Logf("reconcile runs: %v", err)
		return
	}
	for _, r := range runs {
		var m map[string]int
		if err := json.Unmarshal([]byte(r.Counts), &m); err != nil {
			continue
		}
		for k, v := range m {
			c.sum.repairs[r.Trigger+" "+k] += v
		}
	}
}
