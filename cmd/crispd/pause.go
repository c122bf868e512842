package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/crisp-cri/crisp/runtimes/oci"
)

// newPauseCommand is the built-in infra process: what a pause image's
// binary does, from crispd's own static binary, so that pods that need an
// infra process never pull an image. It holds the pod's namespaces open,
// reaps orphans (it is PID 1 when the pod shares a PID namespace) and
// exits on SIGTERM or SIGINT.
func newPauseCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "pause",
		Short:  "Run as a pod's infra process (used inside pods, not by hand)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			sigs := make(chan os.Signal, 4)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
			for sig := range sigs {
				if sig != syscall.SIGCHLD {
					return nil
				}
				for {
					pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
					if pid <= 0 || err != nil {
						break
					}
				}
			}
			return nil
		},
	}
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
