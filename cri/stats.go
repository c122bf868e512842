package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/ocispec"
	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/cgstats"
	"github.com/crisp-cri/crisp/runtimes/logkey"
	"github.com/crisp-cri/crisp/runtimes/network"
	"github.com/crisp-cri/crisp/runtimes/oci"
	"github.com/crisp-cri/crisp/runtimes/storage"
)

// Stats come from the cgroup files (package cgstats), never from a
// runtime exec per container, except under runsc: there the sentry runs
// every container of the pod inside the pod's sandbox process, which sits
// in the infra container's cgroup, so the per-container cgroups runsc
// makes stay empty. A runsc container's own figures come from `runsc
// events --stats` (CPU per container as the sentry counts it; memory is
// the whole sandbox's), run for several containers at once.

// statsWorkers bounds the containers read at once in one list call: cgroup
// files are cheap, but 200 containers read one after another add up.
const statsWorkers = 8

// runscStatsWorkers bounds the `runsc events --stats` execs in flight.
const runscStatsWorkers = 4

// Each cgroup file costs a read (tens of microseconds on a busy node), so
// each call reads only what it reports: CRI's container stats have no I/O
// bytes or task counts, its pod stats add the task count, and metrics
// take everything.
const (
	containerParts = cgstats.PartCPU | cgstats.PartMemory | cgstats.PartPressure
	podParts       = containerParts | cgstats.PartPids
	metricParts    = cgstats.AllParts
)

// ctrReading is what one stats call measured of one container.
type ctrReading struct {
	c      db.Container
	cgroup string
	sample *cgstats.Sample     // nil: not running, or its cgroup is gone
	layer  *storage.LayerUsage // nil: not measured
	// byRuntime: the sample is runsc's own report, not the cgroup's.
	byRuntime bool
}

// podReading is what one stats call measured of one pod.
type podReading struct {
	sb         db.Sandbox
	cgroup     string // the pod's cgroup_parent, "" if it has none
	sample     *cgstats.Sample
	net        []network.InterfaceStats
	netAt      time.Time
	containers []ctrReading
}

// cgroupParents decodes the cgroup_parent of each sandbox (stored in its
// CRI config) once per call.
type cgroupParents struct {
	mu  sync.Mutex
	got map[string]string
}

func (p *cgroupParents) of(sb db.Sandbox) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.got[sb.ID]; ok {
		return v, nil
	}
	cfg, err := sandboxConfig(sb)
	if err != nil {
		return "", err
	}
	if p.got == nil {
		p.got = map[string]string{}
	}
	v := cfg.GetLinux().GetCgroupParent()
	p.got[sb.ID] = v
	return v, nil
}

// readContainer measures container c of pod sb. A running container whose
// cgroup is gone (it exited since it was listed) comes back with no
// sample and no error.
func (s *Server) readContainer(ctx context.Context, c db.Container, sb db.Sandbox, parents *cgroupParents, runsc chan struct{},
	parts cgstats.Parts) (ctrReading, error) {
	r := ctrReading{c: c}
	parent, err := parents.of(sb)
	if err != nil {
		return r, err
	}
	if r.cgroup, err = ocispec.CgroupsPath(parent, c.ID); err != nil {
		return r, fmt.Errorf("cgroup of container %s: %w", c.ID, err)
	}
	if s.layers != nil {
		if u, err := s.layers.Get(c.ID); err == nil {
			r.layer = &u
		} else if !errors.Is(err, storage.ErrNotFound) {
			s.log.Debug("writable layer not measured", slog.String(logkey.Container, c.ID), slog.Any(logkey.Err, err))
		}
	}
	if c.State != db.ContainerRunning {
		return r, nil
	}
	if rt, err := s.runtimeFor(sb.Handler); err == nil && rt.Handler().Type == oci.TypeRunsc {
		select {
		case runsc <- struct{}{}:
		case <-ctx.Done():
			return r, ctx.Err()
		}
		st, err := rt.Stats(ctx, c.ID)
		<-runsc
		if errors.Is(err, oci.ErrNotFound) || errors.Is(err, oci.ErrNotRunning) {
			return r, nil
		}
		if err != nil {
			return r, fmt.Errorf("stats of container %s: %w", c.ID, err)
		}
		r.sample, r.byRuntime = sampleOfRuntime(st), true
		if parts&cgstats.PartDetail != 0 && s.cgroups != nil {
			// The limits runsc set on the container's own (empty) cgroup:
			// what the metrics report as its spec.
			if lim, err := s.cgroups.ReadParts(r.cgroup, cgstats.PartMemory|cgstats.PartDetail); err == nil {
				r.sample.Spec = lim.Spec
				if lim.Memory != nil {
					r.sample.Memory.Limit = lim.Memory.Limit
				}
			}
		}
		return r, nil
	}
	if s.cgroups == nil {
		return r, nil
	}
	smp, err := s.cgroups.ReadParts(r.cgroup, parts)
	if errors.Is(err, cgstats.ErrNotFound) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("stats of container %s: %w", c.ID, err)
	}
	r.sample = &smp
	return r, nil
}

// sampleOfRuntime is what `runsc events --stats` reports, as a sample.
func sampleOfRuntime(st *oci.Stats) *cgstats.Sample {
	return &cgstats.Sample{Time: st.Timestamp,
		CPU:    &cgstats.CPU{UsageNanos: st.CPUUsageNanos},
		Memory: &cgstats.Memory{Usage: st.MemoryUsageBytes, WorkingSet: st.MemoryWorkingSetBytes},
		Pids:   &cgstats.Pids{Current: st.Pids}}
}

// readContainers measures cs, statsWorkers at a time. Containers that
// vanished meanwhile (no pod row) are left out; other failures are logged
// and the container is left out, so one bad cgroup does not hide the
// node's other figures from kubelet.
func (s *Server) readContainers(ctx context.Context, cs []db.Container, sandboxes map[string]db.Sandbox, parents *cgroupParents,
	parts cgstats.Parts) []ctrReading {
	out := make([]ctrReading, len(cs))
	ok := make([]bool, len(cs))
	runsc := make(chan struct{}, runscStatsWorkers)
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(statsWorkers, len(cs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				sb, found := sandboxes[cs[i].SandboxID]
				if !found {
					continue
				}
				r, err := s.readContainer(ctx, cs[i], sb, parents, runsc, parts)
				if err != nil {
					s.log.Warn("container stats not read", slog.String(logkey.Container, cs[i].ID),
						slog.String(logkey.Pod, sb.ID), slog.String(logkey.Runtime, sb.Handler), slog.Any(logkey.Err, err))
					continue
				}
				out[i], ok[i] = r, true
			}
		}()
	}
	for i := range cs {
		work <- i
	}
	close(work)
	wg.Wait()
	kept := out[:0]
	for i, r := range out {
		if ok[i] {
			kept = append(kept, r)
		}
	}
	return kept
}

// containerStats is reading r as CRI reports it.
func (s *Server) containerStats(r ctrReading) *runtimeapi.ContainerStats {
	c := r.c
	st := &runtimeapi.ContainerStats{Attributes: &runtimeapi.ContainerAttributes{Id: c.ID,
		Metadata: &runtimeapi.ContainerMetadata{Name: c.KubeName, Attempt: c.Attempt}, Labels: c.Labels, Annotations: c.Annotations}}
	if r.layer != nil {
		st.WritableLayer = &runtimeapi.FilesystemUsage{Timestamp: r.layer.At.UnixNano(),
			FsId:      &runtimeapi.FilesystemIdentifier{Mountpoint: s.layerRoot},
			UsedBytes: u64(r.layer.Bytes), InodesUsed: u64(r.layer.Inodes)}
	}
	if r.sample == nil {
		return st
	}
	smp := r.sample
	ts := smp.Time.UnixNano()
	if smp.CPU != nil {
		st.Cpu = s.cpuUsage(c.ID, smp, time.Unix(0, c.StartedAt))
	}
	st.Memory = memoryUsage(smp)
	if smp.Swap != nil {
		st.Swap = &runtimeapi.SwapUsage{Timestamp: ts, SwapUsageBytes: u64(smp.Swap.Usage)}
		if avail, ok := smp.Swap.Available(); ok {
			st.Swap.SwapAvailableBytes = u64(avail)
		}
	}
	if smp.IO != nil {
		st.Io = &runtimeapi.IoUsage{Timestamp: ts, Psi: psi(smp.IO.PSI)}
	}
	return st
}

// cpuUsage is smp's CPU figures, with the rate (nano cores) over the time
// since this object's previous sample.
func (s *Server) cpuUsage(id string, smp *cgstats.Sample, started time.Time) *runtimeapi.CpuUsage {
	u := &runtimeapi.CpuUsage{Timestamp: smp.Time.UnixNano(), UsageCoreNanoSeconds: u64(smp.CPU.UsageNanos), Psi: psi(smp.CPU.PSI)}
	if rate, ok := s.cpuRates.rate(id, smp.CPU.UsageNanos, smp.Time, started); ok {
		u.UsageNanoCores = u64(rate)
	}
	return u
}

func memoryUsage(smp *cgstats.Sample) *runtimeapi.MemoryUsage {
	m := smp.Memory
	if m == nil {
		return nil
	}
	u := &runtimeapi.MemoryUsage{Timestamp: smp.Time.UnixNano(), WorkingSetBytes: u64(m.WorkingSet), UsageBytes: u64(m.Usage),
		RssBytes: u64(m.RSS), PageFaults: u64(m.PageFaults), MajorPageFaults: u64(m.MajorFaults), Psi: psi(m.PSI)}
	if avail, ok := m.Available(); ok {
		u.AvailableBytes = u64(avail)
	}
	return u
}

func psi(p *cgstats.PSI) *runtimeapi.PsiStats {
	if p == nil {
		return nil
	}
	data := func(d cgstats.PSIData) *runtimeapi.PsiData {
		return &runtimeapi.PsiData{Total: d.TotalMicros, Avg10: d.Avg10, Avg60: d.Avg60, Avg300: d.Avg300}
	}
	return &runtimeapi.PsiStats{Full: data(p.Full), Some: data(p.Some)}
}

func u64(v uint64) *runtimeapi.UInt64Value { return &runtimeapi.UInt64Value{Value: v} }

// cpuRates keeps each container's and pod's previous CPU sample, from
// which the next one's rate (usage_nano_cores) is computed as cAdvisor
// does. A sample less than minRateWindow after the kept one gets the
// kept rate, so two callers asking in quick succession do not see a rate
// over a few milliseconds.
type cpuRates struct {
	mu   sync.Mutex
	last map[string]cpuSample
}

type cpuSample struct {
	usage   uint64
	at      time.Time
	rate    uint64
	hasRate bool
}

const (
	minRateWindow = time.Second
	// rateSampleTTL drops the samples of objects nobody asked about for
	// this long: they are gone.
	rateSampleTTL = 10 * time.Minute
)

// rate returns the CPU rate in nanoseconds per second for object id at
// (usage, at): over the time since its kept sample, or, for the first
// one, the average since the object started. ok is false when neither
// can be told (no start time).
func (r *cpuRates) rate(id string, usage uint64, at, started time.Time) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]cpuSample{}
	}
	prev, ok := r.last[id]
	if !ok || usage < prev.usage { // first sample, or a counter reset
		next := cpuSample{usage: usage, at: at}
		if started.Unix() > 0 && at.After(started) {
			next.rate, next.hasRate = uint64(float64(usage)/at.Sub(started).Seconds()), true
		}
		r.last[id] = next
		return next.rate, next.hasRate
	}
	window := at.Sub(prev.at)
	if window < minRateWindow {
		return prev.rate, prev.hasRate
	}
	next := cpuSample{usage: usage, at: at, rate: uint64(float64(usage-prev.usage) / window.Seconds()), hasRate: true}
	r.last[id] = next
	return next.rate, true
}

// prune drops the samples not renewed for rateSampleTTL.
func (r *cpuRates) prune(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, smp := range r.last {
		if now.Sub(smp.at) > rateSampleTTL {
			delete(r.last, id)
		}
	}
}
