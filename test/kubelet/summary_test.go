package kubelet

import (
	"fmt"
	"slices"
	"testing"
)

// summary is the part of kubelet's /stats/summary the test checks
// (k8s.io/kubelet/pkg/apis/stats/v1alpha1).
type summary struct {
	Pods []podStats `json:"pods"`
}

type podStats struct {
	PodRef struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"podRef"`
	CPU              *cpuStats        `json:"cpu"`
	Memory           *memoryStats     `json:"memory"`
	Network          *networkStats    `json:"network"`
	EphemeralStorage *fsStats         `json:"ephemeral-storage"`
	Containers       []containerStats `json:"containers"`
}

type containerStats struct {
	Name   string       `json:"name"`
	CPU    *cpuStats    `json:"cpu"`
	Memory *memoryStats `json:"memory"`
	Rootfs *fsStats     `json:"rootfs"`
	Logs   *fsStats     `json:"logs"`
}

type cpuStats struct {
	UsageCoreNanoSeconds *uint64 `json:"usageCoreNanoSeconds"`
}

type memoryStats struct {
	WorkingSetBytes *uint64 `json:"workingSetBytes"`
}

type networkStats struct {
	Name       string `json:"name"`
	Interfaces []struct {
		Name string `json:"name"`
	} `json:"interfaces"`
}

type fsStats struct {
	UsedBytes *uint64 `json:"usedBytes"`
}

// summaryGaps lists what the summary lacks for pods: cpu and memory above
// zero for every pod and every running container, network for every pod,
// ephemeral storage for every pod, rootfs and logs for every running
// container. Empty means complete.
func summaryGaps(s summary, pods []staticPod) []string {
	var gaps []string
	for _, want := range pods {
		i := slices.IndexFunc(s.Pods, func(p podStats) bool {
			return p.PodRef.Namespace == "default" && p.PodRef.Name == want.fullName()
		})
		if i < 0 {
			gaps = append(gaps, fmt.Sprintf("pod %s: not in the summary", want.fullName()))
			continue
		}
		gaps = append(gaps, podGaps(s.Pods[i], want)...)
	}
	return gaps
}

func podGaps(p podStats, want staticPod) []string {
	var gaps []string
	where := "pod " + want.fullName()
	gaps = append(gaps, usageGaps(where, p.CPU, p.Memory)...)
	if p.Network == nil || (p.Network.Name == "" && len(p.Network.Interfaces) == 0) {
		gaps = append(gaps, where+": no network")
	}
	if p.EphemeralStorage == nil || p.EphemeralStorage.UsedBytes == nil {
		gaps = append(gaps, where+": no ephemeral-storage (rootfs + logs)")
	}
	for _, name := range want.running {
		i := slices.IndexFunc(p.Containers, func(c containerStats) bool { return c.Name == name })
		cwhere := where + " container " + name
		if i < 0 {
			gaps = append(gaps, cwhere+": not in the summary")
			continue
		}
		c := p.Containers[i]
		gaps = append(gaps, usageGaps(cwhere, c.CPU, c.Memory)...)
		if c.Rootfs == nil || c.Rootfs.UsedBytes == nil {
			gaps = append(gaps, cwhere+": no rootfs")
		}
		if c.Logs == nil || c.Logs.UsedBytes == nil {
			gaps = append(gaps, cwhere+": no logs")
		}
	}
	return gaps
}

func usageGaps(where string, cpu *cpuStats, mem *memoryStats) []string {
	var gaps []string
	switch {
	case cpu == nil || cpu.UsageCoreNanoSeconds == nil:
		gaps = append(gaps, where+": no cpu")
	case *cpu.UsageCoreNanoSeconds == 0:
		gaps = append(gaps, where+": cpu usageCoreNanoSeconds is 0")
	}
	switch {
	case mem == nil || mem.WorkingSetBytes == nil:
		gaps = append(gaps, where+": no memory")
	case *mem.WorkingSetBytes == 0:
		gaps = append(gaps, where+": memory workingSetBytes is 0")
	}
	return gaps
}

func TestSummaryGaps(t *testing.T) {
	n := func(v uint64) *uint64 { return &v }
	full := containerStats{Name: "app", CPU: &cpuStats{n(5)}, Memory: &memoryStats{n(4096)},
		Rootfs: &fsStats{n(0)}, Logs: &fsStats{n(12)}}
	complete := podStats{CPU: &cpuStats{n(5)}, Memory: &memoryStats{n(4096)},
		Network: &networkStats{Name: "eth0"}, EphemeralStorage: &fsStats{n(12)},
		Containers: []containerStats{full}}
	complete.PodRef.Namespace, complete.PodRef.Name = "default", livenessPod.fullName()

	noNetwork := complete
	noNetwork.Network = nil
	zeroCPU := complete
	zeroCPU.Containers = []containerStats{full}
	zeroCPU.Containers[0].CPU = &cpuStats{n(0)}
	noRootfs := complete
	noRootfs.Containers = []containerStats{full}
	noRootfs.Containers[0].Rootfs = nil

	tests := []struct {
		name string
		pods []podStats
		want []string
	}{
		{"complete", []podStats{complete}, nil},
		{"pod missing", nil, []string{"pod liveness-crisp-kubelet-test: not in the summary"}},
		{"no network", []podStats{noNetwork}, []string{"pod liveness-crisp-kubelet-test: no network"}},
		{"zero cpu", []podStats{zeroCPU}, []string{"pod liveness-crisp-kubelet-test container app: cpu usageCoreNanoSeconds is 0"}},
		{"no rootfs", []podStats{noRootfs}, []string{"pod liveness-crisp-kubelet-test container app: no rootfs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := summaryGaps(summary{Pods: tt.pods}, []staticPod{livenessPod})
			if !slices.Equal(got, tt.want) {
				t.Errorf("summaryGaps() = %q, want %q", got, tt.want)
			}
		})
	}
}
