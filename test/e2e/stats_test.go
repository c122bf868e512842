package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/runtimes/host"
	"github.com/crisp-cri/crisp/test/harness"
)

// statsParent is a pod cgroup_parent of the test's own (under a directory
// of its own), removed at the end.
func statsParent(t *testing.T) string {
	t.Helper()
	top := fmt.Sprintf("/crisp-e2e-stats-%d", os.Getpid())
	parent := top + "/pod"
	// Registered before the daemon: runs after its pods are gone.
	t.Cleanup(func() {
		for _, p := range []string{parent, top} {
			if err := host.RemoveCgroup(p); err != nil {
				t.Errorf("remove cgroup %s: %v", p, err)
			}
		}
	})
	return parent
}

// waitStats polls ContainerStats until ok accepts it (the writable layer
// figure is refreshed in the background), failing after a minute.
func waitStats(ctx context.Context, t *testing.T, d *harness.Daemon, id, what string, ok func(*runtimeapi.ContainerStats) bool) *runtimeapi.ContainerStats {
	t.Helper()
	var last *runtimeapi.ContainerStats
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		r, err := d.Runtime().ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
		if err != nil {
			t.Fatalf("ContainerStats(%s) = %v", id, err)
		}
		if last = r.Stats; ok(last) {
			return last
		}
	}
	t.Fatalf("ContainerStats(%s): never %s; last %v", id, what, last)
	return nil
}

// A runc pod's container: CPU, memory and the writable layer from its
// cgroup and storage; the pod: its cgroup_parent (or the sum of its
// containers'), its netns's counters, its processes; and the metrics.
func TestStatsRunc(t *testing.T) {
	harness.RequireRoot(t)
	parent := statsParent(t)
	d := harness.Start(t)
	image := withBusybox(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rt := d.Runtime()

	pcA := podConfig("stats-a")
	pcA.Linux.CgroupParent = parent
	podA, worker := runPodWithContainer(t, d, image, pcA, "")
	podB, other := runPodWithContainer(t, d, image, podConfig("stats-b"), "")

	// Some CPU, and traffic over the pods' eth0: wget to a closed port of
	// the other pod (ARP, SYN, RST), on the test bridge only.
	execOut(t, d, worker, "sh", "-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done")
	ipB := podIP(ctx, t, d, podB)
	execOut(t, d, worker, "sh", "-c", "wget -q -T 2 -O /dev/null http://"+ipB+":9/ || true")

	first := waitStats(ctx, t, d, worker, "with a writable layer", func(s *runtimeapi.ContainerStats) bool { return s.WritableLayer != nil })
	if first.Cpu.GetUsageCoreNanoSeconds().GetValue() == 0 || first.Memory.GetWorkingSetBytes().GetValue() == 0 ||
		first.Memory.GetUsageBytes().GetValue() == 0 {
		t.Errorf("ContainerStats(worker) = %v, want cpu and memory", first)
	}
	if first.Attributes.GetMetadata().GetName() != "main" || first.WritableLayer.GetFsId().GetMountpoint() == "" {
		t.Errorf("ContainerStats(worker) attributes / fs id = %v / %v", first.Attributes, first.WritableLayer.GetFsId())
	}
	// This host's runc puts containers in the hybrid cgroup2 tree too,
	// where pressure is kept: PSI wherever that cgroup exists.
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/unified", pcA.Linux.CgroupParent, "crisp-"+worker, "cpu.pressure")); err == nil {
		if first.Cpu.GetPsi() == nil || first.Memory.GetPsi() == nil || first.Io.GetPsi() == nil {
			t.Errorf("ContainerStats(worker) has no PSI though its cgroup2 directory has pressure files: %v", first)
		}
	}

	// Writing 2 MiB grows the writable layer.
	before := first.WritableLayer.GetUsedBytes().GetValue()
	execOut(t, d, worker, "dd", "if=/dev/zero", "of=/written", "bs=1024", "count=2048")
	grown := waitStats(ctx, t, d, worker, "with 2 MiB more in its writable layer", func(s *runtimeapi.ContainerStats) bool {
		return s.WritableLayer.GetUsedBytes().GetValue() >= before+2<<20
	})
	if grown.WritableLayer.GetInodesUsed().GetValue() == 0 {
		t.Errorf("writable layer inodes = 0 after writing a file: %v", grown.WritableLayer)
	}

	list, err := rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
	if err != nil {
		t.Fatalf("ListContainerStats() = %v", err)
	}
	seen := map[string]bool{}
	for _, s := range list.Stats {
		seen[s.Attributes.Id] = s.Cpu.GetUsageCoreNanoSeconds().GetValue() > 0 && s.Memory.GetWorkingSetBytes().GetValue() > 0
	}
	if !seen[worker] || !seen[other] {
		t.Errorf("ListContainerStats(): cpu and memory of worker %v, other %v; want both", seen[worker], seen[other])
	}

	for _, pod := range []struct{ id, ctr, name string }{{podA, worker, "with cgroup_parent"}, {podB, other, "without"}} {
		r, err := rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: pod.id})
		if err != nil {
			t.Fatalf("PodSandboxStats(%s) = %v", pod.name, err)
		}
		lx := r.Stats.GetLinux()
		if lx.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 || lx.GetMemory().GetWorkingSetBytes().GetValue() == 0 ||
			lx.GetProcess().GetProcessCount().GetValue() == 0 {
			t.Errorf("PodSandboxStats(%s) = %v, want cpu, memory and processes", pod.name, lx)
		}
		if len(lx.GetContainers()) != 1 || lx.Containers[0].Attributes.Id != pod.ctr {
			t.Errorf("PodSandboxStats(%s) containers = %v, want %s", pod.name, lx.GetContainers(), pod.ctr)
		}
		eth0 := lx.GetNetwork().GetDefaultInterface()
		if eth0.GetName() != "eth0" || eth0.GetRxBytes().GetValue() == 0 || eth0.GetTxBytes().GetValue() == 0 {
			t.Errorf("PodSandboxStats(%s) network = %v, want eth0 with bytes both ways", pod.name, lx.GetNetwork())
		}
	}
	pods, err := rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
	if err != nil || len(pods.Stats) != 2 {
		t.Errorf("ListPodSandboxStats() = %d pods, %v; want 2", len(pods.GetStats()), err)
	}

	checkMetrics(ctx, t, d, podA, worker)
}

// cadvisorMetrics are the names kubelet's /metrics/cadvisor has for a
// container with the cAdvisor stats provider (the list critest v1.37
// checks ListMetricDescriptors against), less those crisp does not
// report: hugetlb (no hierarchy here), memory reservation and ulimits.
// withValue says whether a runc container without a CPU quota always has
// a value: per-device I/O depends on blkio accounting of the disk, and
// PSI on a cgroup2 tree.
var cadvisorMetrics = map[string]bool{
	"container_blkio_device_usage_total": false, "container_cpu_cfs_periods_total": true,
	"container_cpu_cfs_throttled_periods_total": true, "container_cpu_cfs_throttled_seconds_total": true,
	"container_cpu_system_seconds_total": true, "container_cpu_usage_seconds_total": true, "container_cpu_user_seconds_total": true,
	"container_file_descriptors": true, "container_fs_inodes_free": true, "container_fs_inodes_total": true,
	"container_fs_limit_bytes": true, "container_fs_reads_bytes_total": false, "container_fs_reads_total": false,
	"container_fs_usage_bytes": true, "container_fs_writes_bytes_total": false, "container_fs_writes_total": false,
	"container_last_seen": true, "container_memory_cache": true, "container_memory_failcnt": true,
	"container_memory_failures_total": true, "container_memory_kernel_usage": true, "container_memory_mapped_file": true,
	"container_memory_max_usage_bytes": true, "container_memory_rss": true, "container_memory_swap": true,
	"container_memory_usage_bytes": true, "container_memory_working_set_bytes": true,
	"container_network_receive_bytes_total": true, "container_network_receive_errors_total": true,
	"container_network_receive_packets_dropped_total": true, "container_network_receive_packets_total": true,
	"container_network_transmit_bytes_total": true, "container_network_transmit_errors_total": true,
	"container_network_transmit_packets_dropped_total": true, "container_network_transmit_packets_total": true,
	"container_oom_events_total": true, "container_pressure_cpu_stalled_seconds_total": false,
	"container_pressure_cpu_waiting_seconds_total": false, "container_pressure_io_stalled_seconds_total": false,
	"container_pressure_io_waiting_seconds_total": false, "container_pressure_memory_stalled_seconds_total": false,
	"container_pressure_memory_waiting_seconds_total": false, "container_processes": true, "container_sockets": true,
	"container_spec_cpu_period": true, "container_spec_cpu_quota": false, "container_spec_cpu_shares": true,
	"container_spec_memory_limit_bytes": true, "container_spec_memory_swap_limit_bytes": true,
	"container_start_time_seconds": true, "container_threads": true, "container_threads_max": true,
}

// checkMetrics checks ListMetricDescriptors and ListPodSandboxMetrics as
// kubelet's /metrics/cadvisor uses them: every cAdvisor name described,
// with help and labels; pod (or worker) values for every name that always
// has one, each with as many label values as its descriptor has keys; and
// the figures that must be above zero for a running container.
func checkMetrics(ctx context.Context, t *testing.T, d *harness.Daemon, pod, worker string) {
	t.Helper()
	rt := d.Runtime()
	descs, err := rt.ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatalf("ListMetricDescriptors() = %v", err)
	}
	keys := map[string]int{}
	for _, desc := range descs.Descriptors {
		keys[desc.Name] = len(desc.LabelKeys)
		if desc.Help == "" || len(desc.LabelKeys) == 0 {
			t.Errorf("descriptor %s has no help or no label keys: %v", desc.Name, desc)
		}
	}
	for name := range cadvisorMetrics {
		if _, ok := keys[name]; !ok {
			t.Errorf("ListMetricDescriptors() lacks %s", name)
		}
	}
	metrics, err := rt.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatalf("ListPodSandboxMetrics() = %v", err)
	}
	found := map[string]uint64{} // "pod name" or "<container id> name" → sum of values
	seen := map[string]bool{}    // names with any value in the pod
	record := func(who string, m *runtimeapi.Metric) {
		n, ok := keys[m.Name]
		if !ok {
			t.Errorf("metric %s has no descriptor", m.Name)
		}
		if len(m.LabelValues) != n {
			t.Errorf("metric %s of %s has %d label values, its descriptor %d keys", m.Name, who, len(m.LabelValues), n)
		}
		found[who+" "+m.Name] += m.Value.GetValue()
		seen[m.Name] = true
	}
	for _, pm := range metrics.PodMetrics {
		if pm.PodSandboxId != pod {
			continue
		}
		for _, m := range pm.Metrics {
			record("pod", m)
		}
		for _, cm := range pm.ContainerMetrics {
			for _, m := range cm.Metrics {
				record(cm.ContainerId, m)
			}
		}
	}
	for name, always := range cadvisorMetrics {
		if always && !seen[name] {
			t.Errorf("ListPodSandboxMetrics(): no value of %s for the pod or its container", name)
		}
	}
	for _, key := range []string{"pod container_network_receive_bytes_total", "pod container_network_transmit_bytes_total",
		"pod container_processes", worker + " container_memory_working_set_bytes", worker + " container_fs_usage_bytes",
		worker + " container_processes", worker + " container_file_descriptors", worker + " container_spec_cpu_shares",
		worker + " container_spec_cpu_period", worker + " container_fs_limit_bytes", worker + " container_fs_inodes_total",
		worker + " container_fs_inodes_free", worker + " container_memory_kernel_usage", worker + " container_threads"} {
		if found[key] == 0 {
			t.Errorf("ListPodSandboxMetrics(): %s = 0 or missing", strings.TrimPrefix(key, worker+" "))
		}
	}
	now := uint64(time.Now().Unix())
	for _, name := range []string{"container_start_time_seconds", "container_last_seen"} {
		if v := found[worker+" "+name]; v+3600 < now || v > now+60 {
			t.Errorf("ListPodSandboxMetrics(): %s = %d, want within the last hour of %d", name, v, now)
		}
	}
}

// A gVisor pod: the sentry runs the pod's containers inside the sandbox
// process, which sits in the infra container's cgroup. What crisp
// reports: per container, CPU as the sentry counts it and the sandbox's
// memory (runsc events --stats), and the writable layer; per pod, the
// sandbox's cgroup (cpu, memory, host tasks) and the netns's counters.
func TestStatsRunsc(t *testing.T) {
	harness.RequireRoot(t)
	harness.RequireTool(t, "runsc")
	d := harness.Start(t)
	image := withBusybox(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rt := d.Runtime()

	pc := podConfig("stats-gv")
	pc.Annotations = map[string]string{"io.kubernetes.cri.untrusted-workload": "true"}
	pod, ctr := runPodWithContainer(t, d, image, pc, "")
	// A busy loop that outlives the exec, so the container has CPU to
	// show while the test reads it: an exec'd process that already ended
	// showed 0 ns in one CI run (the sentry's per-container figure may
	// count live tasks only), and the container's own sleep uses too
	// little to count.
	execOut(t, d, ctr, "sh", "-c", "(i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done) >/dev/null 2>&1 &")

	st := waitStats(ctx, t, d, ctr, "with a writable layer, cpu and memory", func(s *runtimeapi.ContainerStats) bool {
		return s.WritableLayer != nil && s.Cpu.GetUsageCoreNanoSeconds().GetValue() > 0 && s.Memory.GetWorkingSetBytes().GetValue() > 0
	})
	before := st.WritableLayer.GetUsedBytes().GetValue()
	execOut(t, d, ctr, "dd", "if=/dev/zero", "of=/written", "bs=1024", "count=2048")
	waitStats(ctx, t, d, ctr, "with 2 MiB more in its writable layer", func(s *runtimeapi.ContainerStats) bool {
		return s.WritableLayer.GetUsedBytes().GetValue() >= before+2<<20
	})

	r, err := rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: pod})
	if err != nil {
		t.Fatalf("PodSandboxStats(runsc) = %v", err)
	}
	lx := r.Stats.GetLinux()
	if lx.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 || lx.GetMemory().GetWorkingSetBytes().GetValue() == 0 ||
		lx.GetProcess().GetProcessCount().GetValue() == 0 {
		t.Errorf("PodSandboxStats(runsc) = %v, want the sandbox's cpu, memory and tasks", lx)
	}
	if lx.GetNetwork().GetDefaultInterface().GetName() != "eth0" {
		t.Errorf("PodSandboxStats(runsc) network = %v, want eth0", lx.GetNetwork())
	}
	if len(lx.GetContainers()) != 1 || lx.Containers[0].GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 {
		t.Errorf("PodSandboxStats(runsc) containers = %v, want the container with cpu", lx.GetContainers())
	}

	// Metrics: the container's spec comes from the limits on its own
	// (empty) cgroup, as for runc.
	metrics, err := rt.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatalf("ListPodSandboxMetrics() = %v", err)
	}
	spec := map[string]bool{}
	for _, pm := range metrics.PodMetrics {
		for _, cm := range pm.ContainerMetrics {
			for _, m := range cm.Metrics {
				if cm.ContainerId == ctr && strings.HasPrefix(m.Name, "container_spec_") {
					spec[m.Name] = true
				}
			}
		}
	}
	for _, name := range []string{"container_spec_cpu_period", "container_spec_cpu_shares", "container_spec_memory_limit_bytes",
		"container_spec_memory_swap_limit_bytes"} {
		if !spec[name] {
			t.Errorf("ListPodSandboxMetrics(): no %s for the gVisor container (has %v)", name, spec)
		}
	}
}
