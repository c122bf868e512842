package db

// SandboxState is a pod sandbox's lifecycle state as stored.
//
//	RunPodSandbox ──► creating ──side effects done──► ready ──StopPodSandbox──► notready
//	                     │                              │                           │
//	                     │ failure / crash (reconciler) └──────RemovePodSandbox─────┤
//	                     ▼                                                          ▼
//	               (row deleted)  ◄────────── side effects removed ─────────── removing
type SandboxState string

// Sandbox states.
const (
	SandboxCreating SandboxState = "creating"
	SandboxReady    SandboxState = "ready"
	SandboxNotReady SandboxState = "notready"
	SandboxRemoving SandboxState = "removing"
)

// ContainerState is a container's lifecycle state as stored.
//
//	CreateContainer ──► creating ──► created ──StartContainer──► running ──exit/stop──► exited
//	                       │            │                                                 │
//	                       │            └──────────────── never started ─────────────────►│
//	                       │                                            RemoveContainer   ▼
//	                       └─ failure / crash ─► (row deleted) ◄── side effects gone ── removing
//
// unknown is a container whose process the runtime cannot account for;
// the reconciler resolves it to exited.
type ContainerState string

// Container states.
const (
	ContainerCreating ContainerState = "creating"
	ContainerCreated  ContainerState = "created"
	ContainerRunning  ContainerState = "running"
	ContainerExited   ContainerState = "exited"
	ContainerUnknown  ContainerState = "unknown"
	ContainerRemoving ContainerState = "removing"
)

// NameKind tells the two name registrars apart.
type NameKind string

// Name kinds.
const (
	KindPod       NameKind = "pod"
	KindContainer NameKind = "container"
)
