package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// staticPod is one manifest of the test and what its containers must log.
type staticPod struct {
	name     string // metadata.name; kubelet names the pod name + "-" + nodeName
	manifest func(image string) string
	gvisor   bool              // runs on the untrusted handler
	running  []string          // app containers, running once Ready
	inits    []string          // init containers, exited 0 once Ready
	logs     map[string]string // container -> a line it must log
	liveness string            // the container with an exec liveness probe
}

// The static pods of the test. Every container stops at once on SIGTERM
// (sleep as pid 1 would ignore it), so removal does not wait out a grace
// period.
var (
	livenessPod = staticPod{
		name: "liveness",
		manifest: func(image string) string {
			return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: liveness
  namespace: default
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "touch /tmp/healthy; echo liveness-app-started; trap 'exit 0' TERM; while true; do sleep 1; done"]
    resources:
      requests: {cpu: 50m, memory: 16Mi}
      limits: {cpu: 200m, memory: 64Mi}
    livenessProbe:
      exec:
        command: ["cat", "/tmp/healthy"]
      periodSeconds: 1
      timeoutSeconds: 5
`, image)
		},
		running:  []string{"app"},
		logs:     map[string]string{"app": "liveness-app-started"},
		liveness: "app",
	}

	// The init container writes into the emptyDir; writer reads it and
	// writes its own file; reader waits for that one. Their logs prove the
	// volume is shared.
	sharedPod = staticPod{
		name: "shared",
		manifest: func(image string) string {
			return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: shared
  namespace: default
spec:
  terminationGracePeriodSeconds: 2
  volumes:
  - name: shared
    emptyDir: {}
  initContainers:
  - name: init
    image: %[1]s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo from-init > /shared/init.txt; echo init-done"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  containers:
  - name: writer
    image: %[1]s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo writer-read-$(cat /shared/init.txt); echo from-writer > /shared/writer.txt; trap 'exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  - name: reader
    image: %[1]s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "until [ -f /shared/writer.txt ]; do sleep 1; done; echo reader-read-$(cat /shared/writer.txt); trap 'exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts: [{name: shared, mountPath: /shared}]
`, image)
		},
		running: []string{"writer", "reader"},
		inits:   []string{"init"},
		logs: map[string]string{
			"init":   "init-done",
			"writer": "writer-read-from-init",
			"reader": "reader-read-from-writer",
		},
	}

	// A standalone kubelet has no API server to resolve a RuntimeClass: the
	// pod asks for the sandbox with the untrusted-workload annotation.
	gvisorPod = staticPod{
		name: "gvisor",
		manifest: func(image string) string {
			return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: gvisor
  namespace: default
  annotations:
    io.kubernetes.cri.untrusted-workload: "true"
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo gvisor-app-started; trap 'exit 0' TERM; while true; do sleep 1; done"]
`, image)
		},
		gvisor:  true,
		running: []string{"app"},
		logs:    map[string]string{"app": "gvisor-app-started"},
	}
)

// fullName is the pod's name as kubelet runs it.
func (p staticPod) fullName() string { return p.name + "-" + nodeName }

// write puts the pod's manifest in kubelet's static pod dir, atomically
// (kubelet must never read half a file), and returns when it did.
func (p staticPod) write(n *node, image string) time.Time {
	n.t.Helper()
	tmp := filepath.Join(n.dir, p.name+".yaml.tmp")
	if err := os.WriteFile(tmp, []byte(p.manifest(image)), 0o644); err != nil {
		n.t.Fatal(err)
	}
	written := time.Now()
	if err := os.Rename(tmp, n.manifestPath(p)); err != nil {
		n.t.Fatal(err)
	}
	return written
}

func (n *node) manifestPath(p staticPod) string { return filepath.Join(n.manifests, p.name+".yaml") }

// apiPod is the part of a v1.Pod the test reads from kubelet's /pods.
type apiPod struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		UID       string `json:"uid"`
	} `json:"metadata"`
	Status struct {
		Phase      string `json:"phase"`
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
		ContainerStatuses     []containerStatus `json:"containerStatuses"`
		InitContainerStatuses []containerStatus `json:"initContainerStatuses"`
	} `json:"status"`
}

type containerStatus struct {
	Name         string `json:"name"`
	Ready        bool   `json:"ready"`
	RestartCount int    `json:"restartCount"`
	ContainerID  string `json:"containerID"`
	State        struct {
		Running *struct{} `json:"running"`
		Waiting *struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"waiting"`
		Terminated *struct {
			ExitCode int    `json:"exitCode"`
			Reason   string `json:"reason"`
		} `json:"terminated"`
	} `json:"state"`
}

// ready reports whether the pod's Ready condition is True.
func (p apiPod) ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// describe is a one-line summary of the pod's status for failures.
func (p apiPod) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s phase=%s", p.Metadata.Name, p.Status.Phase)
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		state := "unknown"
		switch {
		case cs.State.Running != nil:
			state = "running"
		case cs.State.Waiting != nil:
			state = "waiting " + cs.State.Waiting.Reason + ": " + cs.State.Waiting.Message
		case cs.State.Terminated != nil:
			state = fmt.Sprintf("terminated %s (%d)", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
		}
		fmt.Fprintf(&b, "; %s: %s restarts=%d", cs.Name, state, cs.RestartCount)
	}
	return b.String()
}

// pods returns kubelet's pods by name.
func (n *node) pods(ctx context.Context) (map[string]apiPod, error) {
	var list struct {
		Items []apiPod `json:"items"`
	}
	if err := n.getJSON(ctx, "/pods", &list); err != nil {
		return nil, err
	}
	byName := map[string]apiPod{}
	for _, p := range list.Items {
		byName[p.Metadata.Name] = p
	}
	return byName, nil
}

// waitReady polls kubelet's view of the pod every 20ms until it is Ready
// and returns it with the time that took from written. The poll is the
// measurement's resolution: kubelet's own condition times are whole
// seconds.
func (n *node) waitReady(ctx context.Context, p staticPod, written time.Time) (apiPod, time.Duration) {
	n.t.Helper()
	var last apiPod
	var lastErr error
	for ctx.Err() == nil {
		pods, err := n.pods(ctx)
		lastErr = err
		if pod, ok := pods[p.fullName()]; ok {
			last = pod
			if pod.ready() {
				return pod, time.Since(written)
			}
		}
		n.alive()
		time.Sleep(20 * time.Millisecond)
	}
	n.t.Fatalf("pod %s not Ready: last seen %s (last error %v)", p.fullName(), last.describe(), lastErr)
	return apiPod{}, 0
}
