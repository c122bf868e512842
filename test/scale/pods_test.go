package main

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestHotCount(t *testing.T) {
	tests := []struct {
		n    int
		hot  float64
		want int
	}{
		{100, 0.2, 20},
		{10, 0.2, 2},
		{7, 0.5, 3},
		{3, 0, 0},
		{4, 1, 4},
		{0, 0.2, 0},
		{1000, 0.1, 100},
	}
	for _, tt := range tests {
		if got := hotCount(tt.n, tt.hot); got != tt.want {
			t.Errorf("hotCount(%d, %v) = %d, want %d", tt.n, tt.hot, got, tt.want)
		}
	}
}

func TestIsHotSpreadsEvenly(t *testing.T) {
	var got []int
	for i := range 20 {
		if isHot(i, 0.2) {
			got = append(got, i)
		}
	}
	want := []int{4, 9, 14, 19}
	if len(got) != len(want) {
		t.Fatalf("hot pods of 20 = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("hot pods of 20 = %v, want %v", got, want)
		}
	}
}

func TestRunningOf(t *testing.T) {
	ctr := func(state runtimeapi.ContainerState, ns, set string) *runtimeapi.Container {
		return &runtimeapi.Container{State: state, Labels: map[string]string{labelNamespace: ns, labelSet: set}}
	}
	running := runtimeapi.ContainerState_CONTAINER_RUNNING
	ctrs := []*runtimeapi.Container{
		ctr(running, "crisp-scale", setPopulate),
		ctr(running, "crisp-scale", setPopulate),
		ctr(runtimeapi.ContainerState_CONTAINER_EXITED, "crisp-scale", setPopulate),
		ctr(running, "crisp-scale", setBurst),
		ctr(running, "default", setPopulate),
		{State: running}, // someone else's, no labels
	}
	if got := runningOf(ctrs, "crisp-scale", setPopulate); got != 2 {
		t.Errorf("runningOf() = %d, want 2", got)
	}
}
