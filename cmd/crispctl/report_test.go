package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/crisp-cri/crisp/cri/adminpb"
)

// Every action is printed with its kind, object, id and reason; paths and
// IPs are never cut short like ids.
func TestPrintReport(t *testing.T) {
	pod := strings.Repeat("ab", 32)
	resp := &adminpb.ReconcileNowResponse{Actions: []*adminpb.ReconcileAction{
		{Kind: "adopt", Object: "pod", Id: pod, Reason: "in a pod dir, not in the database"},
		{Kind: "clean", Object: "netns", Id: pod, Name: "/run/crisp/netns/" + pod, Reason: "its pod is not ready"},
		{Kind: "clean", Object: "mount", Name: "/var/lib/crisp/storage/overlay/l1/merged", Reason: "overlay mount of no container", Error: "device busy"},
	}, Counts: map[string]int32{"adopt": 1, "clean": 1, "clean.failed": 1}}
	var out bytes.Buffer
	cmd := &cobra.Command{}
	cmd.SetOut(&out)
	printReport(cmd, resp)
	var lines []string // with runs of spaces made one
	for _, l := range strings.Split(out.String(), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{
		"adopt pod " + pod[:13] + " in a pod dir, not in the database done",
		"clean netns " + pod[:13] + " (/run/crisp/netns/" + pod + ") its pod is not ready done",
		"clean mount /var/lib/crisp/storage/overlay/l1/merged overlay mount of no container failed: device busy",
		"counts: adopt=1 clean=1 clean.failed=1",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
