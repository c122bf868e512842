package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/crisp-cri/crisp/cri/stream"
	"github.com/crisp-cri/crisp/runtimes/oci"
)

// newPortForwardStdioCommand is the bridge of a port-forward into a pod on
// gVisor's netstack, whose ports nothing on the host can dial: crispd runs
// it with `runsc exec` in the pod's infra container (whose rootfs holds
// crispd), and forwards the client's stream to its stdin and stdout, which
// it bridges to localhost:PORT inside the sandbox. It exits when the
// connection ends, or shortly after its stdin does; a failed connect is
// printed on stderr with exit status 1.
func newPortForwardStdioCommand() *cobra.Command {
	return &cobra.Command{
		Use:          "port-forward-stdio PORT",
		Short:        "Bridge stdin and stdout to localhost:PORT (run by crispd inside gVisor pods, not by hand)",
		Hidden:       true,
		Args:         cobra.ExactArgs(1),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			port, err := strconv.Atoi(args[0])
			if err != nil {
				return fmt.Errorf("port-forward-stdio: port %q: %w", args[0], err)
			}
			if err := stream.BridgeStdio(cmd.Context(), port, cmd.InOrStdin(), cmd.OutOrStdout()); err != nil {
				return fmt.Errorf("port-forward-stdio: localhost:%d: %w", port, err)
			}
			return nil
		},
	}
}

// newRunscNetNSShimCommand runs `runsc create` of a gVisor pod's sandbox on
// gVisor's netstack for conmon, hiding from it the sysctl that old runsc
// takes for the mark of the host's network namespace (see
// oci.RunNetNSShim). It execs runsc and never returns on success.
func newRunscNetNSShimCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "runsc-netns-shim --netns=PATH --runtime=RUNSC -- RUNSC-ARGS...",
		Short:              "Run runsc for a pod on gVisor's netstack (run by conmon for crispd, not by hand)",
		Hidden:             true,
		DisableFlagParsing: true, // everything after -- is runsc's
		SilenceUsage:       true,
		RunE: func(_ *cobra.Command, args []string) error {
			netns, runtimePath, runtimeArgs, err := oci.ParseNetNSShimArgs(args)
			if err != nil {
				return err
			}
			return oci.RunNetNSShim(netns, runtimePath, runtimeArgs)
		},
	}
}
