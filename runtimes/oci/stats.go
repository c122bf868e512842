package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Update changes a running container's cgroup resources. A nil res is a
// no-op. runsc has no update command, so on a runsc handler it returns an
// error wrapping ErrUnsupported without running anything; otherwise errors
// wrap ErrNotFound or ErrNotRunning where they apply.
func (r *Runtime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	if r.isRunsc() {
		return fmt.Errorf("update %s: handler %s (runsc) cannot change resources: %w", id, r.h.Name, ErrUnsupported)
	}
	if res == nil {
		return nil
	}
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("update %s: %w", id, err)
	}
	if _, err := r.run(ctx, bytes.NewReader(data), "update", "--resources=-", id); err != nil {
		return fmt.Errorf("update %s: %w", id, err)
	}
	return nil
}

// Stats is a container's resource usage at one moment.
type Stats struct {
	Timestamp             time.Time
	CPUUsageNanos         uint64 // cumulative CPU time
	MemoryUsageBytes      uint64
	MemoryWorkingSetBytes uint64 // usage minus inactive file pages, as the kubelet counts it
	Pids                  uint64
}

// Stats reads the container's cgroup statistics through the runtime's
// `events --stats`. It returns an error wrapping ErrNotFound or
// ErrNotRunning where the runtime reports them.
func (r *Runtime) Stats(ctx context.Context, id string) (*Stats, error) {
	now := time.Now()
	out, err := r.run(ctx, nil, "events", "--stats", id)
	if err != nil {
		return nil, fmt.Errorf("stats of %s: %w", id, err)
	}
	var ev runc.Event
	if err := json.Unmarshal(out, &ev); err != nil {
		return nil, fmt.Errorf("stats of %s: parse %q: %w", id, out, err)
	}
	if ev.Stats == nil {
		return nil, fmt.Errorf("stats of %s: runtime sent a %q event without data", id, ev.Type)
	}
	m := ev.Stats.Memory
	ws := m.Usage.Usage
	inactive, ok := m.Raw["total_inactive_file"] // cgroup v1
	if !ok {
		inactive = m.Raw["inactive_file"] // cgroup v2
	}
	if inactive < ws {
		ws -= inactive
	} else {
		ws = 0
	}
	return &Stats{
		Timestamp:             now,
		CPUUsageNanos:         ev.Stats.Cpu.Usage.Total,
		MemoryUsageBytes:      m.Usage.Usage,
		MemoryWorkingSetBytes: ws,
		Pids:                  ev.Stats.Pids.Current,
	}, nil
}
