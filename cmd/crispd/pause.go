package main

import (
	"github.com/spf13/cobra"

	"github.com/crisp-cri/crisp/runtimes/oci"
)

// newPauseCommand runs oci.RunPause, a pod's infra process.
func newPauseCommand() *cobra.Command {
	var o oci.PauseOptions
	cmd := &cobra.Command{
		Use:    "pause",
		Short:  "Run as a pod's infra process (used inside pods, not by hand)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE:   func(*cobra.Command, []string) error { return oci.RunPause(o) },
	}
	cmd.Flags().StringVar(&o.Isolate, "isolate", "", "pivot into an empty read-only tmpfs mounted on this dir and drop to nobody (PID 1 of a new PID and mount namespace only)")
	cmd.Flags().StringVar(&o.HostMntNS, "host-mnt-ns", "", "the mount namespace (as /proc/self/ns/mnt reads) that --isolate must not be in")
	cmd.Flags().IntVar(&o.ReadyFD, "ready-fd", 0, "write one byte to this fd once running")
	return cmd
}

// newMonitorCommand is the monitor of a container inside a gVisor pod,
// where conmon cannot be (runsc starts no process of its own for such a
// container): it records the exit and writes the CRI log. Started by
// crispd, it outlives it. It loads no config and opens nothing of crispd's.
func newMonitorCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "monitor",
		Short:              "Monitor a container in a gVisor pod (used by crispd, not by hand)",
		Hidden:             true,
		DisableFlagParsing: true, // the monitor's own flags; it re-runs itself with the same argv
		SilenceUsage:       true,
		RunE: func(_ *cobra.Command, args []string) error {
			a, err := oci.ParseMonitorArgs(args)
			if err != nil {
				return err
			}
			return oci.RunMonitor(a)
		},
	}
}
