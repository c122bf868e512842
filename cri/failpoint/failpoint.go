// Package failpoint marks the steps of crisp's CRI calls where a crash
// matters, so that the chaos tests (test/chaos) can kill crispd exactly
// there. In a normal build Hit does nothing and costs nothing. Built with
// the tag crisp_failpoints, crispd reads CRISP_FAILPOINT at start and kills
// itself with SIGKILL when an armed point is hit:
//
//	CRISP_FAILPOINT=container.create.after-storage     the first hit
//	CRISP_FAILPOINT=container.create.after-storage@3   the third hit
//	CRISP_FAILPOINT=random:5                          any point, 5% of hits
//
// Terms may be joined with commas. Just before the kill, one line
// "crisp failpoint <name>: SIGKILL" goes to stderr, so a test can tell the
// kill from any other death. The package imports nothing from crisp.
package failpoint

// Names lists every failpoint, in the order a pod's life passes them. A
// test checks it against the Hit calls in package cri.
var Names = []string{
	// RunPodSandbox
	"pod.run.after-row",
	"pod.run.after-pod-dir",
	"pod.run.after-netns",
	"pod.run.after-cni",
	"pod.infra.after-create", // infra container (runsc) created, not started
	"pod.run.after-infra",
	"pod.run.before-ready",
	// CreateContainer
	"container.create.after-row",
	"container.create.after-storage",
	"container.create.after-bundle",
	"container.create.before-created", // runtime container made under its monitor
	// StartContainer
	"container.start.before-runtime",
	"container.start.after-runtime",
	// StopContainer, and the stops inside RemoveContainer and StopPodSandbox
	"container.stop.after-signal",
	"container.stop.after-kill",
	// RemoveContainer
	"container.remove.after-state",
	"container.remove.after-runtime",
	"container.remove.before-row",
	// StopPodSandbox
	"pod.stop.after-containers",
	"pod.stop.after-cni",
	// RemovePodSandbox
	"pod.remove.after-state",
	"pod.remove.after-containers",
	"pod.remove.before-row",
}
