package reconciler

import (
	"context"

	"github.com/crisp-cri/crisp/db"
)

// Objects other than pods and containers that Observe sees and Clean
// removes. They share Action.Object with db.KindPod and db.KindContainer.
const (
	ObjNetNS   db.NameKind = "netns"    // a pinned network namespace (and its CNI attachment)
	ObjIP      db.NameKind = "ip"       // a host-local IPAM allocation
	ObjPodDir  db.NameKind = "pod-dir"  // a pod's dir under the run dir
	ObjPodPins db.NameKind = "pod-pins" // the shm and namespace pins in a pod dir (Clean only)
	ObjInfra   db.NameKind = "infra"    // a runc pod's infra process (Path: its pid)
	ObjExit    db.NameKind = "exit"     // a monitor's exit file (Owner: the container)
	ObjMount   db.NameKind = "mount"    // an overlay mount under the storage graph root
	ObjCgroup  db.NameKind = "cgroup"   // a container cgroup crisp's runtimes made
	// An image volume's storage record (Owner: its container, Path: the
	// record's id).
	ObjImageVolume db.NameKind = "image-volume"
)

// Resource is one thing crisp made on the node for a pod or container,
// besides its runtime container and its records.
type Resource struct {
	Object db.NameKind // ObjNetNS, ObjIP, ObjPodDir, ObjMount or ObjCgroup
	// Owner is the id of the pod (netns, ip, pod dir) or container (mount,
	// cgroup; a pod's for its infra) it was made for; "" for a mount of no
	// container.
	Owner string
	Path  string // the pin, the IP address, the dir, the mount point, the cgroup
	// Stale: a netns pin or pod dir whose pins are no longer mounted (a
	// reboot took them away, or someone unmounted them).
	Stale bool
	// InfraExited: a pod dir whose infra process (a runc pod's PID 1) has
	// exited: the pod's shared PID namespace is gone.
	InfraExited bool
}

// Leftovers is the reconciler's view of the resources: it lists them and
// removes one that Diff found left over (unmount, remove the netns after a
// CNI DEL, CNI DEL for an IP, remove a pod dir or its pins, rmdir a
// cgroup). Removing what is already gone is not an error.
type Leftovers interface {
	Resources(ctx context.Context) ([]Resource, error)
	Clean(ctx context.Context, r Resource) error
}
