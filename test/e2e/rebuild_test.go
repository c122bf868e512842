package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
)

// rebuildScene makes 5 pods of 2 containers each: pods 0-2 plain, pod 3
// stopped, pod 4 with a shared PID namespace (an infra container); in pod
// 0 the second container has exited with 3.
func rebuildScene(t *testing.T, d *harness.Daemon) {
	t.Helper()
	image := withBusybox(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rt := d.Runtime()
	for i := range 5 {
		pc := podConfig(fmt.Sprintf("rebuilt-%d", i))
		pc.Metadata.Attempt = uint32(i % 2)
		pc.Annotations = map[string]string{"note": fmt.Sprintf("pod %d", i)}
		if i == 4 {
			pc.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
		}
		podID, _ := runPodWithContainer(t, d, image, pc, "")
		cmd := []string{"sleep", "600"}
		if i == 0 {
			cmd = []string{"sh", "-c", "exit 3"}
		}
		cc := containerConfig("side", image, cmd...)
		cc.Metadata.Attempt = 2
		cc.Annotations = map[string]string{"side": "car"}
		c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cc, SandboxConfig: pc})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if strings.Contains(strings.Join(nodeView(t, d), "\n"), "exited 3 Error") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container that exits with 3 did not:\n%s", strings.Join(nodeView(t, d), "\n"))
		}
	}
}

// nodeView is what kubelet sees of the node through the CRI, one sorted
// line per pod and container (times left out: they are not all kept).
func nodeView(t *testing.T, d *harness.Daemon) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt := d.Runtime()
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pods.Items {
		st, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.Id})
		if err != nil {
			t.Fatal(err)
		}
		m := p.Metadata
		out = append(out, fmt.Sprintf("pod %s %s/%s uid=%s attempt=%d %s handler=%s ip=%s labels=%v annotations=%v", p.Id,
			m.Namespace, m.Name, m.Uid, m.Attempt, p.State, p.RuntimeHandler, st.Status.GetNetwork().GetIp(), sorted(p.Labels), sorted(p.Annotations)))
	}
	cs, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs.Containers {
		st, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.Id})
		if err != nil {
			t.Fatal(err)
		}
		s := st.Status
		state := strings.TrimPrefix(s.State.String(), "CONTAINER_")
		if s.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			state = fmt.Sprintf("exited %d %s", s.ExitCode, s.Reason)
		}
		out = append(out, fmt.Sprintf("ctr %s pod=%s %s attempt=%d %s image=%s ref=%s log=%s labels=%v annotations=%v", c.Id, c.PodSandboxId,
			c.Metadata.Name, c.Metadata.Attempt, state, c.Image.GetImage(), c.ImageRef, s.LogPath, sorted(c.Labels), sorted(c.Annotations)))
	}
	slices.Sort(out)
	return out
}

func sorted(m map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}

func sameView(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s, the CRI shows\n%s\nwant, as before,\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// crispd started without its database rebuilds every pod and container
// from container storage, the runtimes and the pod dirs: the same ids,
// names, labels, annotations, states, exit codes and IPs; and the pods
// then stop and go as any other.
func TestLostDatabaseIsRebuilt(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	rebuildScene(t, d)
	before := nodeView(t, d)
	if len(before) != 15 {
		t.Fatalf("scene has %d objects, want 5 pods + 10 containers:\n%s", len(before), strings.Join(before, "\n"))
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Rename(d.Database()+suffix, d.Database()+".lost"+suffix); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	d.Restart()
	sameView(t, "after losing the database", nodeView(t, d), before)
	out, _, err := d.Crispctl("sql", "--csv", "SELECT trigger, counts, errors FROM reconcile_history")
	if err != nil || !strings.Contains(out, `startup,"{""adopt"":15}",`) {
		t.Errorf("reconcile history = %q, %v; want a startup pass that adopted 15", out, err)
	}
	// Adopted pods behave: a second pass has nothing to do, kubelet can
	// stop and remove them (the harness's cleanup checks).
	out, _, err = d.Crispctl("reconcile")
	if err != nil || !strings.HasPrefix(out, "reconcile pass: 0 actions") {
		t.Errorf("crispctl reconcile after the rebuild = %q, %v; want no action", out, err)
	}
	d.Stop() // a restart on the rebuilt database keeps it all
	d.Restart()
	sameView(t, "after a restart on the rebuilt database", nodeView(t, d), before)
}

// A corrupt database is moved aside, never deleted, and rebuilt the same.
func TestCorruptDatabaseIsMovedAsideAndRebuilt(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	rebuildScene(t, d)
	before := nodeView(t, d)
	if err := d.Kill(); err != nil { // unclean, so quick_check runs too
		t.Fatal(err)
	}
	garbage := []byte(strings.Repeat("this is not a database ", 400))
	if err := os.WriteFile(d.Database(), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(d.Database() + "-wal")
	os.Remove(d.Database() + "-shm")
	d.Restart()
	sameView(t, "after the database was corrupted", nodeView(t, d), before)
	aside, _ := filepath.Glob(d.Database() + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("moved aside: %v, want one %s.corrupt-<time>", aside, d.Database())
	}
	if b, err := os.ReadFile(aside[0]); err != nil || string(b) != string(garbage) {
		t.Errorf("the corrupt file was not kept as it was: %v", err)
	}
}
