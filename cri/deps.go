package cri

import (
	"context"
	"net/netip"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crisp-cri/crisp/runtimes/cgstats"
	"github.com/crisp-cri/crisp/runtimes/network"
	"github.com/crisp-cri/crisp/runtimes/oci"
	"github.com/crisp-cri/crisp/runtimes/pod"
	"github.com/crisp-cri/crisp/runtimes/storage"
)

// The parts of the node the server drives are reached through the small
// interfaces below, declared where they are used, as the reconciler does:
// the server's own logic (undo stacks, retries joining a call in flight,
// idempotent stops and removes) is then tested without root, over fakes.
// Each mirrors the concrete type crispd wires in, so the calls read the
// same. The database stays concrete: SQLite in a temp dir needs no root.
// So do the files a container's monitor leaves under the layout, which
// package oci's file functions read wherever the layout is.

// Images is the image store and the containers' root filesystems:
// *storage.Store. A missing image is an error wrapping
// storage.ErrImageNotFound.
type Images interface {
	Pull(ctx context.Context, ref string, auth *storage.Auth) (storage.Image, error)
	Status(ctx context.Context, ref string) (storage.Image, error)
	List(ctx context.Context) ([]storage.Image, error)
	Remove(ctx context.Context, ref string) error
	Usage(ctx context.Context) (storage.FsUsage, error)
	// CreateContainer makes and mounts a container's rootfs; on failure
	// nothing is left.
	CreateContainer(id, imageID string, meta storage.Metadata) (storage.Rootfs, error)
	// RemoveContainer unmounts and deletes it; a missing one is no error.
	RemoveContainer(id string) error
}

// Network pins pods' network namespaces and attaches pods to the CNI
// network: *network.Manager. RemoveNetNS and Teardown of what is gone
// succeed.
type Network interface {
	NewNetNS(id string) (path string, err error)
	RemoveNetNS(path string) error
	Setup(ctx context.Context, a network.Attachment) (ips []string, err error)
	Teardown(ctx context.Context, a network.Attachment) error
	// Status says why pods cannot be attached yet, nil when they can.
	Status() error
	// SetPodCIDRs gives the built-in bridge the node's pod CIDRs.
	SetPodCIDRs(cidrs []netip.Prefix) error
}

// Runtime runs one handler's containers under their monitors:
// *oci.Runtime. Methods taking an id return errors wrapping
// oci.ErrNotFound when the runtime does not know it.
type Runtime interface {
	Handler() oci.Handler
	// Netstack: gVisor's own network stack serves the handler's pods.
	Netstack() bool
	GlobalArgs() []string
	ExecTTYArgs() []string
	// Create makes the container whose config.json is in its bundle, under
	// a new monitor, and returns its init pid; it does not start it.
	Create(ctx context.Context, c oci.CreateOpts) (pid int, err error)
	Start(ctx context.Context, id string) error
	Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error
	Delete(ctx context.Context, id string, force bool) error
	State(ctx context.Context, id string) (oci.State, error)
	ExecSync(ctx context.Context, id string, p specs.Process, timeout time.Duration) (stdout, stderr []byte, exitCode int, err error)
	Update(ctx context.Context, id string, res *specs.LinuxResources) error
	Stats(ctx context.Context, id string) (*oci.Stats, error)
}

// Cgroups reads a cgroup's counters (the parts asked) from the cgroup
// filesystem: *cgstats.Reader. A cgroup that is not there is an error
// wrapping cgstats.ErrNotFound.
type Cgroups interface {
	ReadParts(path string, parts cgstats.Parts) (cgstats.Sample, error)
}

// Layers measures containers' writable layers, keeping the figures:
// *storage.LayerUsages. A container storage does not know is an error
// wrapping storage.ErrNotFound.
type Layers interface {
	Get(id string) (storage.LayerUsage, error)
}

// NetStats reads the interface counters of a pinned network namespace:
// *network.Manager.
type NetStats interface {
	InterfaceStats(netnsPath string) ([]network.InterfaceStats, error)
}

// Pods makes and removes a pod's own corner of the node (its directory,
// /dev/shm, pinned IPC and UTS namespaces, sysctls, infra process): the
// functions of package pod, over one root. PodsAt is the real one.
type Pods interface {
	// Dir is pod id's directory; it holds the pod's record.
	Dir(id string) string
	// Create makes the pod's directory, files and namespaces; on failure
	// nothing is left.
	Create(o pod.Options) (pod.Pod, error)
	// Remove undoes Create; removing what is not there succeeds.
	Remove(id string) error
	// Lookup returns the paths of what Create made; empty for the rest.
	Lookup(id string) pod.Pod
	SetSysctls(netns, ipcns string, sysctls map[string]string) error
	StartInfra(id string, o pod.InfraOptions) (pod.Infra, error)
	// StopInfra kills the pod's infra process if it has one.
	StopInfra(ctx context.Context, id string) error
	// LookupInfra returns the running infra process, or an error wrapping
	// pod.ErrNoInfra or pod.ErrInfraExited.
	LookupInfra(id string) (pod.Infra, error)
}

// PodsAt returns the Pods of package pod, with the pods' directories
// under root.
func PodsAt(root string) Pods { return podsAt(root) }

type podsAt string

func (r podsAt) Dir(id string) string                  { return pod.Dir(string(r), id) }
func (r podsAt) Create(o pod.Options) (pod.Pod, error) { return pod.Create(string(r), o) }
func (r podsAt) Remove(id string) error                { return pod.Remove(string(r), id) }
func (r podsAt) Lookup(id string) pod.Pod              { return pod.Lookup(string(r), id) }

func (r podsAt) SetSysctls(netns, ipcns string, sysctls map[string]string) error {
	return pod.SetSysctls(netns, ipcns, sysctls)
}

func (r podsAt) StartInfra(id string, o pod.InfraOptions) (pod.Infra, error) {
	return pod.StartInfra(string(r), id, o)
}

func (r podsAt) StopInfra(ctx context.Context, id string) error {
	return pod.StopInfra(ctx, string(r), id)
}

func (r podsAt) LookupInfra(id string) (pod.Infra, error) { return pod.LookupInfra(string(r), id) }
