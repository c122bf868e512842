package cri

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/runtimes/cgstats"
	"github.com/crisp-cri/crisp/runtimes/network"
	"github.com/crisp-cri/crisp/runtimes/storage"
)

// fakeCgroups stands for *cgstats.Reader: samples by cgroup path.
type fakeCgroups struct {
	mu      sync.Mutex
	samples map[string]cgstats.Sample
}

func (f *fakeCgroups) set(path string, s cgstats.Sample) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.samples[path] = s
}

func (f *fakeCgroups) drop(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.samples, path)
}

// ReadParts keeps the parts asked, as the real reader does (pressure and
// detail are not told apart here).
func (f *fakeCgroups) ReadParts(path string, parts cgstats.Parts) (cgstats.Sample, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.samples[path]
	if !ok {
		return cgstats.Sample{}, fmt.Errorf("read cgroup %s: %w", path, cgstats.ErrNotFound)
	}
	if parts&cgstats.PartCPU == 0 {
		s.CPU = nil
	}
	if parts&cgstats.PartMemory == 0 {
		s.Memory, s.Swap = nil, nil
	}
	if parts&(cgstats.PartIO|cgstats.PartPressure) == 0 {
		s.IO = nil
	}
	if parts&cgstats.PartPids == 0 {
		s.Pids = nil
	}
	return s, nil
}

// fakeLayers stands for *storage.LayerUsages.
type fakeLayers struct {
	mu    sync.Mutex
	usage map[string]storage.LayerUsage
}

func (f *fakeLayers) Get(id string) (storage.LayerUsage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.usage[id]
	if !ok {
		return storage.LayerUsage{}, storage.ErrNotFound
	}
	return u, nil
}

// fakeNetStats stands for *network.Manager's InterfaceStats, by netns.
type fakeNetStats struct {
	mu  sync.Mutex
	ifs map[string][]network.InterfaceStats
}

func (f *fakeNetStats) InterfaceStats(netns string) ([]network.InterfaceStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ifs, ok := f.ifs[netns]
	if !ok {
		return nil, fmt.Errorf("netns %s: gone", netns)
	}
	return ifs, nil
}

var t0 = time.Unix(1800000000, 0)

// sampleAt is a container sample at t with cpu usage (ns) and memory
// usage (bytes).
func sampleAt(t time.Time, cpu, mem uint64) cgstats.Sample {
	return cgstats.Sample{Time: t,
		CPU:    &cgstats.CPU{UsageNanos: cpu, PSI: &cgstats.PSI{Some: cgstats.PSIData{TotalMicros: 3_000_000, Avg10: 1.5}}},
		Memory: &cgstats.Memory{Usage: mem, WorkingSet: mem / 2, RSS: mem / 4, PageFaults: 10, MajorFaults: 1, Limit: mem * 4},
		Swap:   &cgstats.Swap{Usage: 7},
		IO:     &cgstats.IO{ReadBytes: 100, WriteBytes: 200, PSI: &cgstats.PSI{Full: cgstats.PSIData{TotalMicros: 2}}},
		Pids:   &cgstats.Pids{Current: 2}}
}

// A runc container's stats come from its cgroup and its writable layer,
// with no runtime exec; the rate comes from the previous sample.
func TestContainerStatsFromCgroup(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	running := n.startCtr(t, podID, podCfg, ctrConfig("app"))
	created := n.createCtr(t, podID, podCfg, ctrConfig("other"))
	n.cg.set("/crisp/"+running, sampleAt(t0, 4e9, 1<<20))
	n.layers.usage[running] = storage.LayerUsage{Bytes: 4096, Inodes: 3, At: t0}
	n.layers.usage[created] = storage.LayerUsage{Bytes: 0, Inodes: 1, At: t0}

	resp, err := n.srv.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: running[:12]})
	if err != nil {
		t.Fatal(err)
	}
	st := resp.Stats
	if st.Attributes.Id != running || st.Attributes.Metadata.Name != "app" {
		t.Errorf("attributes = %v", st.Attributes)
	}
	if st.Cpu.GetUsageCoreNanoSeconds().GetValue() != 4e9 || st.Cpu.Timestamp != t0.UnixNano() || st.Cpu.Psi.GetSome().GetTotal() != 3_000_000 {
		t.Errorf("cpu = %v", st.Cpu)
	}
	if m := st.Memory; m.GetUsageBytes().GetValue() != 1<<20 || m.GetWorkingSetBytes().GetValue() != 1<<19 || m.GetRssBytes().GetValue() != 1<<18 ||
		m.GetAvailableBytes().GetValue() != 4<<20-1<<19 || m.GetPageFaults().GetValue() != 10 || m.GetMajorPageFaults().GetValue() != 1 {
		t.Errorf("memory = %v", m)
	}
	if st.Swap.GetSwapUsageBytes().GetValue() != 7 || st.Swap.SwapAvailableBytes != nil {
		t.Errorf("swap = %v, want usage 7 and no available (unlimited)", st.Swap)
	}
	if st.Io.GetPsi().GetFull().GetTotal() != 2 {
		t.Errorf("io = %v", st.Io)
	}
	if w := st.WritableLayer; w.GetUsedBytes().GetValue() != 4096 || w.GetInodesUsed().GetValue() != 3 || w.GetFsId().GetMountpoint() == "" {
		t.Errorf("writable layer = %v", w)
	}
	if got := n.f.count("rt.stats"); got != 0 {
		t.Errorf("runtime stats ran %d times for a runc container, want 0", got)
	}

	// Two seconds and one CPU second later: half a core.
	n.cg.set("/crisp/"+running, sampleAt(t0.Add(2*time.Second), 5e9, 1<<20))
	list, err := n.srv.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
	if err != nil || len(list.Stats) != 1 || list.Stats[0].Attributes.Id != running {
		t.Fatalf("ListContainerStats() = %v, %v; want the running container", list, err)
	}
	if got := list.Stats[0].Cpu.GetUsageNanoCores().GetValue(); got != 5e8 {
		t.Errorf("usage_nano_cores = %d, want 5e8", got)
	}

	resp, err = n.srv.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: created})
	if err != nil || resp.Stats.Cpu != nil || resp.Stats.Memory != nil || resp.Stats.Attributes.Id != created ||
		resp.Stats.WritableLayer.GetInodesUsed().GetValue() != 1 {
		t.Errorf("ContainerStats(created) = %v, %v; want attributes and writable layer only", resp, err)
	}

	// Its cgroup gone (exited behind the row's back): skipped, no error.
	n.cg.drop("/crisp/" + running)
	list, err = n.srv.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{PodSandboxId: podID}})
	if err != nil || len(list.Stats) != 0 {
		t.Errorf("ListContainerStats() = %v, %v; want nothing", list, err)
	}
	list, err = n.srv.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{PodSandboxId: strings.Repeat("0", 64)}})
	if err != nil || len(list.Stats) != 0 {
		t.Errorf("ListContainerStats(unknown pod) = %v, %v; want nothing", list, err)
	}
	if _, err := n.srv.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: strings.Repeat("f", 64)}); codeOfErr(err) != codes.NotFound {
		t.Errorf("ContainerStats(unknown) = %v, want NotFound", err)
	}
	if _, err := n.srv.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: created}); codeOfErr(err) != codes.FailedPrecondition {
		t.Errorf("ReopenContainerLog(created) = %v, want FailedPrecondition", err)
	}
}

// Under runsc the container's cgroup is empty (the sandbox process holds
// the pod): its figures come from the runtime.
func TestContainerStatsRunsc(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	podCfg := n.podConfig("gv")
	podID := n.runPod(t, podCfg, "runsc")
	id := n.startCtr(t, podID, podCfg, ctrConfig("app"))
	n.cg.set("/crisp/"+id, cgstats.Sample{Time: t0, CPU: &cgstats.CPU{}, Memory: &cgstats.Memory{}})
	resp, err := n.srv.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Stats.Cpu.GetUsageCoreNanoSeconds().GetValue() != 1000 || resp.Stats.Memory.GetWorkingSetBytes().GetValue() != 1024 {
		t.Errorf("ContainerStats(runsc) = %v, want the runtime's figures", resp.Stats)
	}
	if got := n.f.count("rt.stats"); got != 1 {
		t.Errorf("runtime stats ran %d times, want 1", got)
	}
}

func withCgroupParent(p string) podOpt {
	return func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = p }
}

func TestPodSandboxStats(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()

	// Without a cgroup_parent: the sum of its containers' and infra's.
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	a := n.startCtr(t, podID, podCfg, ctrConfig("a"))
	b := n.startCtr(t, podID, podCfg, ctrConfig("b"))
	n.cg.set("/crisp/"+a, sampleAt(t0, 1e9, 1000))
	n.cg.set("/crisp/"+b, sampleAt(t0.Add(time.Second), 2e9, 3000))
	n.cg.set("/crisp/"+podID, cgstats.Sample{Time: t0, CPU: &cgstats.CPU{UsageNanos: 5}, Pids: &cgstats.Pids{Current: 1}})
	netns := n.podRow(t, podID).NetNSPath
	n.netst.ifs[netns] = []network.InterfaceStats{{Name: "eth0", RxBytes: 10, TxBytes: 20, RxErrors: 1, TxErrors: 2}}

	resp, err := n.srv.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: podID[:10]})
	if err != nil {
		t.Fatal(err)
	}
	st := resp.Stats
	if st.Attributes.Id != podID || st.Attributes.Metadata.Name != "web" {
		t.Errorf("attributes = %v", st.Attributes)
	}
	lx := st.Linux
	if got := lx.Cpu.GetUsageCoreNanoSeconds().GetValue(); got != 3e9+5 {
		t.Errorf("pod cpu = %d, want the sum 3e9+5", got)
	}
	if lx.Cpu.Psi != nil {
		t.Errorf("pod cpu PSI = %v, want none: pressure does not add up", lx.Cpu.Psi)
	}
	if got := lx.Memory.GetWorkingSetBytes().GetValue(); got != 2000 {
		t.Errorf("pod working set = %d, want 2000", got)
	}
	if got := lx.Process.GetProcessCount().GetValue(); got != 5 {
		t.Errorf("pod process count = %d, want 5", got)
	}
	if d := lx.Network.GetDefaultInterface(); d.GetName() != "eth0" || d.GetRxBytes().GetValue() != 10 || d.GetTxBytes().GetValue() != 20 ||
		d.GetRxErrors().GetValue() != 1 || d.GetTxErrors().GetValue() != 2 || len(lx.Network.Interfaces) != 1 {
		t.Errorf("pod network = %v", lx.Network)
	}
	var ids []string
	for _, c := range lx.Containers {
		ids = append(ids, c.Attributes.Id)
	}
	slices.Sort(ids)
	want := []string{a, b}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("pod containers = %v, want %v", ids, want)
	}

	// With a cgroup_parent: that cgroup.
	pcfg := n.podConfig("parented", withCgroupParent("/kubepods/podX"))
	pid := n.runPod(t, pcfg, "")
	n.cg.set("/kubepods/podX", sampleAt(t0, 9e9, 9000))
	resp, err = n.srv.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: pid})
	if err != nil || resp.Stats.Linux.Cpu.GetUsageCoreNanoSeconds().GetValue() != 9e9 || resp.Stats.Linux.Cpu.Psi == nil {
		t.Errorf("PodSandboxStats(parented) = %v, %v; want the parent cgroup's figures with PSI", resp, err)
	}

	list, err := n.srv.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
	if err != nil || len(list.Stats) != 2 {
		t.Errorf("ListPodSandboxStats() = %d pods, %v; want 2", len(list.GetStats()), err)
	}
	list, err = n.srv.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{Id: pid[:8]}})
	if err != nil || len(list.Stats) != 1 || list.Stats[0].Attributes.Id != pid {
		t.Errorf("ListPodSandboxStats(id) = %v, %v", list, err)
	}
	if _, err := n.srv.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: strings.Repeat("e", 64)}); codeOfErr(err) != codes.NotFound {
		t.Errorf("PodSandboxStats(unknown) = %v, want NotFound", err)
	}
	if _, err := n.srv.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{}); codeOfErr(err) != codes.InvalidArgument {
		t.Errorf("PodSandboxStats(no id) = %v, want InvalidArgument", err)
	}
}

func TestPodSandboxMetrics(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	a := n.startCtr(t, podID, podCfg, ctrConfig("a"))
	n.cg.set("/crisp/"+a, sampleAt(t0, 4e9+5e8, 1000))
	n.layers.usage[a] = storage.LayerUsage{Bytes: 123, At: t0}
	n.netst.ifs[n.podRow(t, podID).NetNSPath] = []network.InterfaceStats{{Name: "eth0", RxBytes: 10, TxBytes: 20}}

	descs, err := n.srv.ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, d := range descs.Descriptors {
		keys[d.Name] = d.LabelKeys
	}
	for _, name := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_memory_usage_bytes",
		"container_memory_rss", "container_fs_usage_bytes", "container_network_receive_bytes_total", "container_network_transmit_bytes_total",
		"container_pressure_cpu_waiting_seconds_total"} {
		if keys[name] == nil {
			t.Errorf("no descriptor for %s", name)
		}
	}

	resp, err := n.srv.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil || len(resp.PodMetrics) != 1 {
		t.Fatalf("ListPodSandboxMetrics() = %v, %v", resp, err)
	}
	pm := resp.PodMetrics[0]
	value := func(ms []*runtimeapi.Metric, name string) (uint64, []string, bool) {
		for _, m := range ms {
			if len(m.LabelValues) != len(keys[m.Name]) {
				t.Errorf("metric %s has %d label values, its descriptor %d keys", m.Name, len(m.LabelValues), len(keys[m.Name]))
			}
			if m.Name == name {
				return m.Value.GetValue(), m.LabelValues, true
			}
		}
		return 0, nil, false
	}
	if pm.PodSandboxId != podID {
		t.Errorf("pod metrics id = %s, want %s", pm.PodSandboxId, podID)
	}
	if v, labels, ok := value(pm.Metrics, "container_network_receive_bytes_total"); !ok || v != 10 || labels[len(labels)-1] != "eth0" || labels[5] != "web" {
		t.Errorf("pod network metric = %d %v %v", v, labels, ok)
	}
	if len(pm.ContainerMetrics) != 1 || pm.ContainerMetrics[0].ContainerId != a {
		t.Fatalf("container metrics = %v", pm.ContainerMetrics)
	}
	cm := pm.ContainerMetrics[0].Metrics
	if v, labels, ok := value(cm, "container_cpu_usage_seconds_total"); !ok || v != 4 || labels[0] != "a" || labels[len(labels)-1] != "total" {
		t.Errorf("container cpu metric = %d %v %v, want 4 whole seconds, container a, cpu total", v, labels, ok)
	}
	if v, _, ok := value(cm, "container_memory_working_set_bytes"); !ok || v != 500 {
		t.Errorf("container working set metric = %d %v", v, ok)
	}
	if v, _, ok := value(cm, "container_fs_usage_bytes"); !ok || v != 123 {
		t.Errorf("container fs usage metric = %d %v", v, ok)
	}
	if v, _, ok := value(cm, "container_pressure_cpu_waiting_seconds_total"); !ok || v != 3 {
		t.Errorf("container cpu pressure metric = %d %v", v, ok)
	}
	if _, _, ok := value(cm, "container_network_receive_bytes_total"); ok {
		t.Error("a container has network metrics; they are the pod's")
	}
}

func TestCPURates(t *testing.T) {
	var r cpuRates
	started := t0.Add(-10 * time.Second)
	if got, ok := r.rate("c", 5e9, t0, started); !ok || got != 5e8 {
		t.Errorf("first rate = %d, %v; want the average since start, 5e8", got, ok)
	}
	if got, ok := r.rate("c", 5e9+1e6, t0.Add(10*time.Millisecond), started); !ok || got != 5e8 {
		t.Errorf("rate 10 ms later = %d, %v; want the kept rate 5e8", got, ok)
	}
	if got, ok := r.rate("c", 7e9, t0.Add(2*time.Second), started); !ok || got != 1e9 {
		t.Errorf("rate 2 s later = %d, %v; want 1e9", got, ok)
	}
	if _, ok := r.rate("new", 1, t0, time.Time{}); ok {
		t.Error("rate without a start time or a previous sample reported")
	}
	r.prune(t0.Add(time.Hour))
	if len(r.last) != 0 {
		t.Errorf("%d samples left after prune, want 0", len(r.last))
	}
}
