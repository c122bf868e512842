package cri

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/cgstats"
)

// With kubelet's PodAndContainerStatsFromCRI gate, /metrics/cadvisor is
// what ListPodSandboxMetrics returns, named by ListMetricDescriptors: the
// cAdvisor names and labels that dashboards and alerts already use. CRI
// metric values are integers, so the *_seconds_total counters are whole
// seconds. Container metrics carry the labels kubelet's cAdvisor
// collector gives them (container, id = the cgroup, image, name = the
// container id, namespace, pod); pod-level ones (network, and the pod's
// cgroup) have container "".

// metricLabels are the labels of every metric, in this order.
var metricLabels = []string{"container", "id", "image", "name", "namespace", "pod"}

// metricDef is one metric crisp reports: its descriptor, its type, the
// labels past metricLabels, and how to read it.
type metricDef struct {
	name, help string
	kind       runtimeapi.MetricType
	extra      []string // labels past metricLabels (cpu, interface, failure_type, …)
	// of returns the values, each with its extra labels' values;
	// nothing when the figure is missing.
	of func(r *metricSource) []labeled
}

type labeled struct {
	labels []string
	value  uint64
}

// metricSource is one container's (or pod's) readings.
type metricSource struct {
	sample  *cgstats.Sample
	layer   *uint64
	fs      *fsFigures // the filesystem of the writable layers
	net     []netFigures
	started time.Time // zero: not known
}

// fsFigures is the size of the filesystem holding the writable layers.
type fsFigures struct {
	limit, inodes, inodesFree uint64
}

type netFigures struct {
	name                                  string
	rxBytes, rxPackets, rxErrors, rxDrops uint64
	txBytes, txPackets, txErrors, txDrops uint64
}

func one(v uint64) []labeled { return []labeled{{value: v}} }

func sampleOf(f func(*cgstats.Sample) (uint64, bool)) func(*metricSource) []labeled {
	return func(r *metricSource) []labeled {
		if r.sample == nil {
			return nil
		}
		if v, ok := f(r.sample); ok {
			return one(v)
		}
		return nil
	}
}

// partOf reads one figure of one part of the sample (part returns nil
// when the kernel gave none): nothing when the sample or the part is
// missing.
func partOf[P any](part func(*cgstats.Sample) *P, f func(*P) uint64) func(*metricSource) []labeled {
	return sampleOf(func(s *cgstats.Sample) (uint64, bool) {
		if p := part(s); p != nil {
			return f(p), true
		}
		return 0, false
	})
}

func cpuOf(f func(*cgstats.CPU) uint64) func(*metricSource) []labeled {
	return partOf(func(s *cgstats.Sample) *cgstats.CPU { return s.CPU }, f)
}

func memOf(f func(*cgstats.Memory) uint64) func(*metricSource) []labeled {
	return partOf(func(s *cgstats.Sample) *cgstats.Memory { return s.Memory }, f)
}

func ioOf(f func(*cgstats.IO) uint64) func(*metricSource) []labeled {
	return partOf(func(s *cgstats.Sample) *cgstats.IO { return s.IO }, f)
}

func pidsOf(f func(*cgstats.Pids) uint64) func(*metricSource) []labeled {
	return partOf(func(s *cgstats.Sample) *cgstats.Pids { return s.Pids }, f)
}

func specOf(f func(*cgstats.Spec) uint64) func(*metricSource) []labeled {
	return partOf(func(s *cgstats.Sample) *cgstats.Spec { return s.Spec }, f)
}

func tasksOf(f func(*cgstats.Tasks) uint64) func(*metricSource) []labeled {
	return partOf(func(s *cgstats.Sample) *cgstats.Tasks { return s.Tasks }, f)
}

func throttlingOf(f func(*cgstats.Throttling) uint64) func(*metricSource) []labeled {
	return partOf(func(s *cgstats.Sample) *cgstats.Throttling {
		if s.CPU == nil {
			return nil
		}
		return s.CPU.Throttling
	}, f)
}

func fsOf(f func(*fsFigures) uint64) func(*metricSource) []labeled {
	return func(r *metricSource) []labeled {
		if r.fs == nil || r.layer == nil {
			return nil
		}
		return one(f(r.fs))
	}
}

const nsPerSecond = uint64(time.Second)

// psiOf reads a pressure total in whole seconds; which picks the resource.
func psiOf(which func(*cgstats.Sample) *cgstats.PSI, full bool) func(*metricSource) []labeled {
	return func(r *metricSource) []labeled {
		if r.sample == nil {
			return nil
		}
		p := which(r.sample)
		if p == nil {
			return nil
		}
		if full {
			return one(p.Full.TotalMicros / 1e6)
		}
		return one(p.Some.TotalMicros / 1e6)
	}
}

func netOf(f func(netFigures) uint64) func(*metricSource) []labeled {
	return func(r *metricSource) []labeled {
		var out []labeled
		for _, n := range r.net {
			out = append(out, labeled{labels: []string{n.name}, value: f(n)})
		}
		return out
	}
}

func cpuPSI(s *cgstats.Sample) *cgstats.PSI {
	if s.CPU == nil {
		return nil
	}
	return s.CPU.PSI
}

func memPSI(s *cgstats.Sample) *cgstats.PSI {
	if s.Memory == nil {
		return nil
	}
	return s.Memory.PSI
}

func ioPSI(s *cgstats.Sample) *cgstats.PSI {
	if s.IO == nil {
		return nil
	}
	return s.IO.PSI
}

var (
	counter = runtimeapi.MetricType_COUNTER
	gauge   = runtimeapi.MetricType_GAUGE
)

// metricDefs are the metrics crisp reports, by cAdvisor's names.
var metricDefs = []metricDef{
	{name: "container_cpu_usage_seconds_total", help: "Cumulative cpu time consumed in seconds.", kind: counter, extra: []string{"cpu"},
		of: func(r *metricSource) []labeled {
			if r.sample == nil || r.sample.CPU == nil {
				return nil
			}
			return []labeled{{labels: []string{"total"}, value: r.sample.CPU.UsageNanos / nsPerSecond}}
		}},
	{name: "container_cpu_user_seconds_total", help: "Cumulative user cpu time consumed in seconds.", kind: counter,
		of: cpuOf(func(c *cgstats.CPU) uint64 { return c.UserNanos / nsPerSecond })},
	{name: "container_cpu_system_seconds_total", help: "Cumulative system cpu time consumed in seconds.", kind: counter,
		of: cpuOf(func(c *cgstats.CPU) uint64 { return c.SystemNanos / nsPerSecond })},
	{name: "container_memory_usage_bytes", help: "Current memory usage in bytes, including all memory regardless of when it was accessed", kind: gauge,
		of: memOf(func(m *cgstats.Memory) uint64 { return m.Usage })},
	{name: "container_memory_working_set_bytes", help: "Current working set in bytes.", kind: gauge,
		of: memOf(func(m *cgstats.Memory) uint64 { return m.WorkingSet })},
	{name: "container_memory_rss", help: "Size of RSS in bytes.", kind: gauge,
		of: memOf(func(m *cgstats.Memory) uint64 { return m.RSS })},
	{name: "container_memory_cache", help: "Number of bytes of page cache memory.", kind: gauge,
		of: memOf(func(m *cgstats.Memory) uint64 { return m.Cache })},
	{name: "container_memory_mapped_file", help: "Size of memory mapped files in bytes.", kind: gauge,
		of: memOf(func(m *cgstats.Memory) uint64 { return m.MappedFile })},
	{name: "container_memory_total_active_file_bytes", help: "Current total active file in bytes.", kind: gauge,
		of: memOf(func(m *cgstats.Memory) uint64 { return m.ActiveFile })},
	{name: "container_memory_total_inactive_file_bytes", help: "Current total inactive file in bytes.", kind: gauge,
		of: memOf(func(m *cgstats.Memory) uint64 { return m.InactiveFile })},
	{name: "container_memory_max_usage_bytes", help: "Maximum memory usage recorded in bytes", kind: gauge,
		of: memOf(func(m *cgstats.Memory) uint64 { return m.MaxUsage })},
	{name: "container_memory_failcnt", help: "Number of memory usage hits limits", kind: counter,
		of: memOf(func(m *cgstats.Memory) uint64 { return m.Failcnt })},
	{name: "container_memory_failures_total", help: "Cumulative count of memory allocation failures.", kind: counter, extra: []string{"failure_type"},
		of: func(r *metricSource) []labeled {
			if r.sample == nil || r.sample.Memory == nil {
				return nil
			}
			m := r.sample.Memory
			return []labeled{{labels: []string{"pgfault"}, value: m.PageFaults}, {labels: []string{"pgmajfault"}, value: m.MajorFaults}}
		}},
	{name: "container_memory_swap", help: "Container swap usage in bytes.", kind: gauge,
		of: func(r *metricSource) []labeled {
			if r.sample == nil || r.sample.Swap == nil {
				return nil
			}
			return one(r.sample.Swap.Usage)
		}},
	{name: "container_fs_reads_bytes_total", help: "Cumulative count of bytes read", kind: counter,
		of: ioOf(func(io *cgstats.IO) uint64 { return io.ReadBytes })},
	{name: "container_fs_writes_bytes_total", help: "Cumulative count of bytes written", kind: counter,
		of: ioOf(func(io *cgstats.IO) uint64 { return io.WriteBytes })},
	{name: "container_fs_reads_total", help: "Cumulative count of reads completed", kind: counter,
		of: ioOf(func(io *cgstats.IO) uint64 { return io.Reads })},
	{name: "container_fs_writes_total", help: "Cumulative count of writes completed", kind: counter,
		of: ioOf(func(io *cgstats.IO) uint64 { return io.Writes })},
	{name: "container_fs_usage_bytes", help: "Number of bytes that are consumed by the container on this filesystem (its writable layer).", kind: gauge,
		of: func(r *metricSource) []labeled {
			if r.layer == nil {
				return nil
			}
			return one(*r.layer)
		}},
	{name: "container_threads", help: "Number of threads running inside the container", kind: gauge,
		of: pidsOf(func(p *cgstats.Pids) uint64 { return p.Current })},
	{name: "container_pressure_cpu_stalled_seconds_total", help: "Total time duration no tasks in the container could make progress due to CPU congestion.", kind: counter,
		of: psiOf(cpuPSI, true)},
	{name: "container_pressure_cpu_waiting_seconds_total", help: "Total time duration tasks in the container have waited due to CPU congestion.", kind: counter,
		of: psiOf(cpuPSI, false)},
	{name: "container_pressure_memory_stalled_seconds_total", help: "Total time duration no tasks in the container could make progress due to memory congestion.", kind: counter,
		of: psiOf(memPSI, true)},
	{name: "container_pressure_memory_waiting_seconds_total", help: "Total time duration tasks in the container have waited due to memory congestion.", kind: counter,
		of: psiOf(memPSI, false)},
	{name: "container_pressure_io_stalled_seconds_total", help: "Total time duration no tasks in the container could make progress due to IO congestion.", kind: counter,
		of: psiOf(ioPSI, true)},
	{name: "container_pressure_io_waiting_seconds_total", help: "Total time duration tasks in the container have waited due to IO congestion.", kind: counter,
		of: psiOf(ioPSI, false)},
	{name: "container_network_receive_bytes_total", help: "Cumulative count of bytes received", kind: counter, extra: []string{"interface"},
		of: netOf(func(n netFigures) uint64 { return n.rxBytes })},
	{name: "container_network_receive_packets_total", help: "Cumulative count of packets received", kind: counter, extra: []string{"interface"},
		of: netOf(func(n netFigures) uint64 { return n.rxPackets })},
	{name: "container_network_receive_packets_dropped_total", help: "Cumulative count of packets dropped while receiving", kind: counter, extra: []string{"interface"},
		of: netOf(func(n netFigures) uint64 { return n.rxDrops })},
	{name: "container_network_receive_errors_total", help: "Cumulative count of errors encountered while receiving", kind: counter, extra: []string{"interface"},
		of: netOf(func(n netFigures) uint64 { return n.rxErrors })},
	{name: "container_network_transmit_bytes_total", help: "Cumulative count of bytes transmitted", kind: counter, extra: []string{"interface"},
		of: netOf(func(n netFigures) uint64 { return n.txBytes })},
	{name: "container_network_transmit_packets_total", help: "Cumulative count of packets transmitted", kind: counter, extra: []string{"interface"},
		of: netOf(func(n netFigures) uint64 { return n.txPackets })},
	{name: "container_network_transmit_packets_dropped_total", help: "Cumulative count of packets dropped while transmitting", kind: counter, extra: []string{"interface"},
		of: netOf(func(n netFigures) uint64 { return n.txDrops })},
	{name: "container_network_transmit_errors_total", help: "Cumulative count of errors encountered while transmitting", kind: counter, extra: []string{"interface"},
		of: netOf(func(n netFigures) uint64 { return n.txErrors })},
	{name: "container_cpu_cfs_periods_total", help: "Number of elapsed enforcement period intervals.", kind: counter,
		of: throttlingOf(func(t *cgstats.Throttling) uint64 { return t.Periods })},
	{name: "container_cpu_cfs_throttled_periods_total", help: "Number of throttled period intervals.", kind: counter,
		of: throttlingOf(func(t *cgstats.Throttling) uint64 { return t.ThrottledPeriods })},
	{name: "container_cpu_cfs_throttled_seconds_total", help: "Total time duration the container has been throttled.", kind: counter,
		of: throttlingOf(func(t *cgstats.Throttling) uint64 { return t.ThrottledNanos / nsPerSecond })},
	{name: "container_memory_kernel_usage", help: "Size of kernel memory allocated in bytes.", kind: gauge,
		of: memOf(func(m *cgstats.Memory) uint64 { return m.KernelUsage })},
	{name: "container_oom_events_total", help: "Count of out of memory events observed for the container", kind: counter,
		of: memOf(func(m *cgstats.Memory) uint64 { return m.OOMKills })},
	{name: "container_spec_cpu_period", help: "CPU period of the container.", kind: gauge,
		of: specOf(func(s *cgstats.Spec) uint64 { return s.CPUPeriodMicros })},
	{name: "container_spec_cpu_quota", help: "CPU quota of the container.", kind: gauge,
		of: func(r *metricSource) []labeled {
			if r.sample == nil || r.sample.Spec == nil || r.sample.Spec.CPUQuotaMicros == 0 {
				return nil // as cAdvisor: only a container with a quota has one
			}
			return one(r.sample.Spec.CPUQuotaMicros)
		}},
	{name: "container_spec_cpu_shares", help: "CPU share of the container.", kind: gauge,
		of: specOf(func(s *cgstats.Spec) uint64 { return s.CPUShares })},
	{name: "container_spec_memory_limit_bytes", help: "Memory limit for the container.", kind: gauge,
		of: memOf(func(m *cgstats.Memory) uint64 { return m.Limit })},
	{name: "container_spec_memory_swap_limit_bytes", help: "Memory swap limit for the container.", kind: gauge,
		of: specOf(func(s *cgstats.Spec) uint64 { return s.MemorySwapLimit })},
	{name: "container_threads_max", help: "Maximum number of threads allowed inside the container, infinity if value is zero", kind: gauge,
		of: pidsOf(func(p *cgstats.Pids) uint64 { return p.Limit })},
	{name: "container_processes", help: "Number of processes running inside the container.", kind: gauge,
		of: tasksOf(func(t *cgstats.Tasks) uint64 { return t.Processes })},
	{name: "container_file_descriptors", help: "Number of open file descriptors for the container.", kind: gauge,
		of: tasksOf(func(t *cgstats.Tasks) uint64 { return t.FileDescriptors })},
	{name: "container_sockets", help: "Number of open sockets for the container.", kind: gauge,
		of: tasksOf(func(t *cgstats.Tasks) uint64 { return t.Sockets })},
	{name: "container_fs_limit_bytes", help: "Number of bytes that can be consumed by the container on this filesystem.", kind: gauge,
		of: fsOf(func(f *fsFigures) uint64 { return f.limit })},
	{name: "container_fs_inodes_total", help: "Number of Inodes", kind: gauge,
		of: fsOf(func(f *fsFigures) uint64 { return f.inodes })},
	{name: "container_fs_inodes_free", help: "Number of available Inodes", kind: gauge,
		of: fsOf(func(f *fsFigures) uint64 { return f.inodesFree })},
	{name: "container_blkio_device_usage_total", help: "Blkio device bytes usage", kind: counter,
		extra: []string{"device", "major", "minor", "operation"},
		of: func(r *metricSource) []labeled {
			if r.sample == nil || r.sample.IO == nil {
				return nil
			}
			var out []labeled
			for _, d := range r.sample.IO.Devices {
				name, major, minor := blockDevice(d.Major, d.Minor), strconv.Itoa(int(d.Major)), strconv.Itoa(int(d.Minor))
				out = append(out, labeled{labels: []string{name, major, minor, "Read"}, value: d.ReadBytes},
					labeled{labels: []string{name, major, minor, "Write"}, value: d.WriteBytes})
			}
			return out
		}},
	{name: "container_start_time_seconds", help: "Start time of the container since unix epoch in seconds.", kind: gauge,
		of: func(r *metricSource) []labeled {
			if r.started.IsZero() {
				return nil
			}
			return one(uint64(r.started.Unix()))
		}},
	{name: "container_last_seen", help: "Last time a container was seen by the exporter", kind: gauge,
		of: func(r *metricSource) []labeled {
			if r.sample == nil {
				return nil
			}
			return one(uint64(r.sample.Time.Unix()))
		}},
}

// blockDevices caches the names of block devices by number.
var blockDevices sync.Map // "major:minor" → name

// blockDevice is the kernel's name of a block device ("sda"), from the
// /sys/dev/block link; "" if it has none.
func blockDevice(major, minor uint32) string {
	key := fmt.Sprintf("%d:%d", major, minor)
	if v, ok := blockDevices.Load(key); ok {
		return v.(string)
	}
	name := ""
	if target, err := os.Readlink(filepath.Join("/sys/dev/block", key)); err == nil {
		name = filepath.Base(target)
	}
	blockDevices.Store(key, name)
	return name
}

// layerFS measures the filesystem at root; nil when it cannot.
func layerFS(root string) *fsFigures {
	if root == "" {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return nil
	}
	return &fsFigures{limit: st.Blocks * uint64(st.Bsize), inodes: st.Files, inodesFree: st.Ffree}
}

func (d metricDef) labelKeys() []string {
	return append(append([]string(nil), metricLabels...), d.extra...)
}

// ListMetricDescriptors names every metric ListPodSandboxMetrics returns.
func (s *Server) ListMetricDescriptors(context.Context, *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	resp := &runtimeapi.ListMetricDescriptorsResponse{}
	for _, d := range metricDefs {
		resp.Descriptors = append(resp.Descriptors, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: d.labelKeys()})
	}
	return resp, nil
}

// ListPodSandboxMetrics reports the metrics of every ready pod and its
// running containers, measured now (timestamp 0: not a cached figure).
func (s *Server) ListPodSandboxMetrics(ctx context.Context, _ *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	sbs, err := s.store.ListSandboxes(ctx, db.SandboxFilter{State: db.SandboxReady})
	if err != nil {
		return nil, err
	}
	rs, err := s.readPods(ctx, sbs, metricParts)
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListPodSandboxMetricsResponse{}
	fs := layerFS(s.layerRoot)
	for _, r := range rs {
		resp.PodMetrics = append(resp.PodMetrics, s.podMetrics(r, fs))
	}
	return resp, nil
}

func (s *Server) podMetrics(r podReading, fs *fsFigures) *runtimeapi.PodSandboxMetrics {
	sb := r.sb
	pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: sb.ID}
	pod := &metricSource{sample: r.sample, started: time.Unix(0, sb.CreatedAt)}
	for _, n := range r.net {
		pod.net = append(pod.net, netFigures{name: n.Name, rxBytes: n.RxBytes, rxPackets: n.RxPackets, rxErrors: n.RxErrors, rxDrops: n.RxDropped,
			txBytes: n.TxBytes, txPackets: n.TxPackets, txErrors: n.TxErrors, txDrops: n.TxDropped})
	}
	pm.Metrics = metricsOf(pod, []string{"", r.cgroup, "", "", sb.KubeNamespace, sb.KubeName})
	for _, c := range r.containers {
		src := &metricSource{sample: c.sample, fs: fs}
		if c.c.StartedAt != 0 {
			src.started = time.Unix(0, c.c.StartedAt)
		}
		if c.layer != nil {
			src.layer = &c.layer.Bytes
		}
		labels := []string{c.c.KubeName, c.cgroup, c.c.Image, c.c.ID, sb.KubeNamespace, sb.KubeName}
		pm.ContainerMetrics = append(pm.ContainerMetrics, &runtimeapi.ContainerMetrics{ContainerId: c.c.ID, Metrics: metricsOf(src, labels)})
	}
	return pm
}

// metricsOf is every metric src has, labelled.
func metricsOf(src *metricSource, labels []string) []*runtimeapi.Metric {
	var out []*runtimeapi.Metric
	for _, d := range metricDefs {
		for _, v := range d.of(src) {
			values := labels
			if len(d.extra) > 0 {
				values = append(append([]string(nil), labels...), v.labels...)
			}
			out = append(out, &runtimeapi.Metric{Name: d.name, MetricType: d.kind, LabelValues: values, Value: u64(v.value)})
		}
	}
	return out
}
