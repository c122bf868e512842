package harness

import "strings"

// WithPrivateCgroup2 starts crispd in a mount namespace of its own
// (unshare(1), private propagation) where cgroup2 is mounted on
// /sys/fs/cgroup: what a unified (cgroup v2 only) host looks like, on a
// v1 or hybrid one. Only that one mount is made; it is the kernel's single
// cgroup2 hierarchy, so on a v1 host it has no controllers that v1
// hierarchies took. Everything crispd starts (conmon, runc, containers,
// the overlay and netns mounts) lives in that namespace, which goes with
// the last of them: look at it through /proc/<PID()>/root and
// /proc/<PID()>/mountinfo, or nsenter --mount=/proc/<PID()>/ns/mnt.
func WithPrivateCgroup2() Option {
	return func(d *Daemon, _ *strings.Builder) {
		unshare := RequireTool(d.t, "unshare")
		// unshare and sh exec: crispd keeps the pid the harness started.
		d.wrap = []string{unshare, "--mount", "--propagation", "private", "--",
			"sh", "-c", `mount -t cgroup2 none /sys/fs/cgroup && exec "$@"`, "sh"}
	}
}
