// Package cri serves the CRI RuntimeService and ImageService, and crisp's
// admin service, over gRPC: request validation, the one error-to-status
// mapping, and OCI spec generation (cri/ocispec). It imports db
// and runtimes, never reconciler: the admin service declares the small
// interface it needs and cmd/crispd wires the reconciler in.
package cri

import (
	"log/slog"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/ocispec"
	"github.com/crisp-cri/crisp/cri/stream"
	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/layout"
	"github.com/crisp-cri/crisp/runtimes/oci"
	"github.com/crisp-cri/crisp/runtimes/trust"
)

// Version is crisp's version, set at build time with -ldflags -X.
var Version = "0.1.0-dev"

// RuntimeName is what Version reports as the runtime's name.
const RuntimeName = "crisp"

// Handler is one configured runtime handler: its runtime, which knows the
// handler's name, type and binary, and what the CRI server adds to it.
type Handler struct {
	Runtime Runtime // an *oci.Runtime
	Class   string  // trusted or untrusted
	// Annotations says which CRI annotations reach this handler's specs.
	Annotations ocispec.Passthrough
	// PrivilegedWithoutHostDevices keeps the host's devices from
	// privileged containers of this handler.
	PrivilegedWithoutHostDevices bool
	// Features is what the runtime said it can do (oci.ProbeFeatures):
	// Status advertises it and CreateContainer refuses what it cannot.
	Features oci.Features
}

// Deps are the parts of the node the CRI server drives.
type Deps struct {
	Store    *db.Store
	Images   Images             // a *storage.Store
	Network  Network            // a *network.Manager
	Pods     Pods               // nil: package pod, under Files.Pods()
	Handlers map[string]Handler // by name
	Trust    trust.Config
	Files    layout.Layout // where containers' and pods' files are
	Log      *slog.Logger
	// ClampOOMScoreAdj: this node cannot lower oom_score_adj (no
	// CAP_SYS_RESOURCE), so negative values are raised to 0.
	ClampOOMScoreAdj   bool
	CgroupNamespace    bool                       // the kernel has cgroup namespaces: unprivileged containers get one
	MissingControllers ocispec.MissingControllers // cgroup controllers the host lacks: their limits are dropped
	HostCaps           []string                   // capabilities crispd holds: what privileged grants
	HostDevices        []specs.LinuxDevice        // given to privileged containers
	CrispdPath         string                     // crispd's static binary: the infra process is `crispd pause`
	// EventBuffer is how many events a GetContainerEvents stream may fall
	// behind by before it is ended; 0 means DefaultEventBuffer.
	EventBuffer int
	// What the stats calls read; a nil one leaves its figures out.
	Cgroups   Cgroups  // a *cgstats.Reader
	Layers    Layers   // a *storage.LayerUsages
	NetStats  NetStats // a *network.Manager
	LayerRoot string   // the filesystem holding writable layers (storage's graph root)
}

// Server implements the CRI services. Calls whose capability has not been
// built yet return Unimplemented through the embedded servers, never a
// pretend success.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	store    *db.Store
	images   Images
	net      Network
	pods     Pods
	handlers map[string]Handler
	trust    trust.Config
	files    layout.Layout
	log      *slog.Logger
	locks    keyedLocks
	exits    exitNotifier
	events   *eventHub // GetContainerEvents streams, fed by WatchEvents
	ctrList  *listCache[*runtimeapi.Container]
	podList  *listCache[*runtimeapi.PodSandbox]

	allCtrStats sharedReading[*runtimeapi.ListContainerStatsResponse]  // unfiltered ListContainerStats
	allPodStats sharedReading[*runtimeapi.ListPodSandboxStatsResponse] // unfiltered ListPodSandboxStats

	clampOOM    bool
	cgroupNS    bool
	missing     ocispec.MissingControllers
	hostCaps    []string
	hostDevices []specs.LinuxDevice
	crispdPath  string
	streams     *stream.Server

	cgroups   Cgroups
	layers    Layers
	netStats  NetStats
	layerRoot string
	cpuRates  cpuRates
}

// NewServer returns the CRI server over d.
func NewServer(d Deps) *Server {
	if d.Pods == nil {
		d.Pods = PodsAt(d.Files.Pods())
	}
	return &Server{store: d.Store, images: d.Images, net: d.Network, pods: d.Pods, handlers: d.Handlers, trust: d.Trust,
		files: d.Files, log: d.Log, events: newEventHub(d.EventBuffer, d.Log),
		ctrList: newListCache[*runtimeapi.Container](), podList: newListCache[*runtimeapi.PodSandbox](),
		clampOOM: d.ClampOOMScoreAdj, cgroupNS: d.CgroupNamespace, missing: d.MissingControllers, hostCaps: d.HostCaps, hostDevices: d.HostDevices, crispdPath: d.CrispdPath,
		cgroups: d.Cgroups, layers: d.Layers, netStats: d.NetStats, layerRoot: d.LayerRoot}
}
