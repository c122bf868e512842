package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/ocispec"
	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/cgstats"
	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// PodSandboxStats reports a ready pod's resource use: its cgroup (its
// cgroup_parent, or the sum of its containers' and infra's cgroups when it
// has none), the interface counters of its network namespace, its
// process count, and its running containers' stats. NotFound for an
// unknown pod.
func (s *Server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	sb, err := s.sandboxFor(ctx, req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	rs, err := s.readPods(ctx, []db.Sandbox{sb}, podParts)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("stats of pod %s: not measured (see the log)", sb.ID)
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: s.podSandboxStats(rs[0])}, nil
}

// ListPodSandboxStats reports the stats of the ready pods that match the
// filter.
func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	fl := req.GetFilter()
	if fl.GetId() == "" && len(fl.GetLabelSelector()) == 0 {
		shared := context.WithoutCancel(ctx) // see ListContainerStats
		return s.allPodStats.get(s.store.Generation, func() (*runtimeapi.ListPodSandboxStatsResponse, error) {
			return s.listPodSandboxStats(shared, nil)
		})
	}
	return s.listPodSandboxStats(ctx, fl)
}

func (s *Server) listPodSandboxStats(ctx context.Context, fl *runtimeapi.PodSandboxStatsFilter) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	f := db.SandboxFilter{State: db.SandboxReady}
	if fl != nil {
		f.IDPrefix, f.Labels = fl.Id, fl.LabelSelector
	}
	sbs, err := s.store.ListSandboxes(ctx, f)
	if err != nil {
		return nil, err
	}
	rs, err := s.readPods(ctx, sbs, podParts)
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListPodSandboxStatsResponse{}
	for _, r := range rs {
		resp.Stats = append(resp.Stats, s.podSandboxStats(r))
	}
	return resp, nil
}

// readPods measures pods sbs and their running containers. A pod that
// cannot be measured is logged and left out.
func (s *Server) readPods(ctx context.Context, sbs []db.Sandbox, parts cgstats.Parts) ([]podReading, error) {
	if len(sbs) == 0 {
		return nil, nil
	}
	f := db.ContainerFilter{State: db.ContainerRunning}
	if len(sbs) == 1 {
		f.SandboxID = sbs[0].ID
	}
	cs, err := s.store.ListContainers(ctx, f)
	if err != nil {
		return nil, err
	}
	bySandbox := make(map[string]db.Sandbox, len(sbs))
	for _, sb := range sbs {
		bySandbox[sb.ID] = sb
	}
	s.cpuRates.prune(time.Now())
	parents := &cgroupParents{}
	ctrs := map[string][]ctrReading{}
	for _, r := range s.readContainers(ctx, cs, bySandbox, parents, parts) {
		ctrs[r.c.SandboxID] = append(ctrs[r.c.SandboxID], r)
	}
	var out []podReading
	for _, sb := range sbs {
		r, err := s.readPod(sb, ctrs[sb.ID], parents, parts)
		if err != nil {
			s.log.Warn("pod stats not read", slog.String(logkey.Pod, sb.ID), slog.String(logkey.Runtime, sb.Handler), slog.Any(logkey.Err, err))
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// readPod measures pod sb's own cgroup and network; ctrs are its
// containers, already measured.
func (s *Server) readPod(sb db.Sandbox, ctrs []ctrReading, parents *cgroupParents, parts cgstats.Parts) (podReading, error) {
	r := podReading{sb: sb, containers: ctrs}
	parent, err := parents.of(sb)
	if err != nil {
		return r, err
	}
	r.cgroup = parent
	if s.cgroups != nil {
		smp, err := s.podSample(sb, parent, ctrs, parts)
		if err != nil {
			return r, err
		}
		r.sample = smp
	}
	if sb.NetNSPath != "" && s.netStats != nil {
		ifs, err := s.netStats.InterfaceStats(sb.NetNSPath)
		if err != nil {
			// The pod may be stopping; its other figures still stand.
			s.log.Debug("pod network not measured", slog.String(logkey.Pod, sb.ID), slog.Any(logkey.Err, err))
		} else {
			r.net, r.netAt = ifs, time.Now()
		}
	}
	return r, nil
}

// podSample reads the pod's cgroup_parent when it has one. Without one its
// containers sit in cgroups of their own (and a runc pod's infra process,
// or a runsc pod's whole sandbox, in the pod id's), which are summed; a
// runsc container's own cgroup is read here too, empty as it is, never
// its runtime-reported figures, which would count the sandbox twice.
func (s *Server) podSample(sb db.Sandbox, parent string, ctrs []ctrReading, parts cgstats.Parts) (*cgstats.Sample, error) {
	if parent != "" {
		smp, err := s.cgroups.ReadParts(parent, parts)
		if errors.Is(err, cgstats.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("stats of pod %s: %w", sb.ID, err)
		}
		return &smp, nil
	}
	infra, err := ocispec.CgroupsPath("", sb.ID)
	if err != nil {
		return nil, err
	}
	paths := []string{infra}
	var samples []cgstats.Sample
	for _, c := range ctrs {
		if c.sample != nil && !c.byRuntime {
			samples = append(samples, *c.sample) // read a moment ago
			continue
		}
		paths = append(paths, c.cgroup)
	}
	for _, p := range paths {
		smp, err := s.cgroups.ReadParts(p, parts)
		if errors.Is(err, cgstats.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stats of pod %s: %w", sb.ID, err)
		}
		samples = append(samples, smp)
	}
	if len(samples) == 0 {
		return nil, nil
	}
	sum := cgstats.Sum(samples)
	return &sum, nil
}

// podSandboxStats is reading r as CRI reports it.
func (s *Server) podSandboxStats(r podReading) *runtimeapi.PodSandboxStats {
	sb := r.sb
	st := &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{Id: sb.ID, Metadata: sandboxMetadata(sb), Labels: sb.Labels, Annotations: sb.Annotations},
		Linux:      &runtimeapi.LinuxPodSandboxStats{},
	}
	lx := st.Linux
	if smp := r.sample; smp != nil {
		ts := smp.Time.UnixNano()
		if smp.CPU != nil {
			lx.Cpu = s.cpuUsage(sb.ID, smp, time.Unix(0, sb.CreatedAt))
		}
		lx.Memory = memoryUsage(smp)
		if smp.Pids != nil {
			lx.Process = &runtimeapi.ProcessUsage{Timestamp: ts, ProcessCount: u64(smp.Pids.Current)}
		}
		if smp.IO != nil {
			lx.Io = &runtimeapi.IoUsage{Timestamp: ts, Psi: psi(smp.IO.PSI)}
		}
	}
	if r.net != nil {
		n := &runtimeapi.NetworkUsage{Timestamp: r.netAt.UnixNano()}
		for _, i := range r.net {
			iu := &runtimeapi.NetworkInterfaceUsage{Name: i.Name, RxBytes: u64(i.RxBytes), RxErrors: u64(i.RxErrors),
				TxBytes: u64(i.TxBytes), TxErrors: u64(i.TxErrors)}
			n.Interfaces = append(n.Interfaces, iu)
			// CNI names the pod's interface eth0; kubelet reports the
			// default one as the pod's network.
			if i.Name == "eth0" || n.DefaultInterface == nil {
				n.DefaultInterface = iu
			}
		}
		lx.Network = n
	}
	for _, c := range r.containers {
		lx.Containers = append(lx.Containers, s.containerStats(c))
	}
	return st
}
