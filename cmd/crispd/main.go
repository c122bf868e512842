// Command crispd is crisp's daemon: the CRI runtime and image services for
// kubelet and crictl, crisp's admin service for crispctl, and the
// reconciler that keeps node state true. This package is wiring only.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"
	"go.podman.io/storage/pkg/reexec"

	"github.com/crisp-cri/crisp/cmd/internal/config"
)

func main() {
	// go.podman.io/storage re-executes this binary for some layer work.
	if reexec.Init() {
		return
	}
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "crispd:", err)
		os.Exit(1)
	}
}

// startCPUProfile profiles the daemon until the returned stop runs.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// flags are the command-line overrides of config keys.
type flags struct {
	config                                        string
	runDir, stateDir, socket, adminSocket, dbPath string
	logLevel, logFormat                           string
	cpuProfile                                    string
}

func newRootCommand() *cobra.Command {
	var f flags
	root := &cobra.Command{
		Use:   "crispd",
		Short: "crisp: a Kubernetes CRI runtime that keeps node state in SQLite",
		Long: `crispd serves the Kubernetes CRI (RuntimeService and ImageService) on a unix
socket for kubelet and crictl, and crisp's admin service on a second, root-only
socket for crispctl. Pods and containers are recorded in a SQLite database; a
reconciler keeps that database in agreement with what actually runs.

Configuration is one TOML file over built-in defaults (see 'crispd config');
flags override the file. With no flags crispd uses /run/crisp/crisp.sock,
/run/crisp/admin.sock and /var/lib/crisp/state.db.`,
		Example: `  crispd                                  # run with the defaults
  crispd --config /etc/crisp/crisp.toml   # run with a config file
  crispd config > /etc/crisp/crisp.toml   # write out the effective config, commented`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.load(cmd)
			if err != nil {
				return err
			}
			if f.cpuProfile != "" {
				stop, err := startCPUProfile(f.cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			return serve(cmd.Context(), cfg, func() (config.Config, error) { return f.load(cmd) })
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&f.config, "config", "", "TOML config file (default "+config.DefaultPath+" if it exists)")
	pf.StringVar(&f.runDir, "run-dir", "", "directory for sockets and runtime state (config run_dir)")
	pf.StringVar(&f.stateDir, "state-dir", "", "directory for persistent state (config state_dir)")
	pf.StringVar(&f.socket, "socket", "", "CRI socket path (config socket)")
	pf.StringVar(&f.adminSocket, "admin-socket", "", "admin socket path (config admin_socket)")
	pf.StringVar(&f.dbPath, "database", "", "SQLite database path (config database)")
	pf.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (config log_level)")
	pf.StringVar(&f.logFormat, "log-format", "", "auto, text or json (config log_format)")
	root.Flags().StringVar(&f.cpuProfile, "cpu-profile", "", "write a Go CPU profile of the daemon's run to this file (for latency work)")
	_ = root.Flags().MarkHidden("cpu-profile")

	root.AddCommand(newPauseCommand(), newMonitorCommand(), newPortForwardStdioCommand(), newRunscNetNSShimCommand())
	root.AddCommand(&cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration as commented TOML",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.load(cmd)
			if err != nil {
				return err
			}
			return cfg.Write(cmd.OutOrStdout())
		},
	})
	return root
}

// load reads the config file and applies the flags that were given.
func (f *flags) load(cmd *cobra.Command) (config.Config, error) {
	cfg, err := config.Load(f.config)
	if err != nil {
		return cfg, err
	}
	set := func(name string, dst *string, val string) {
		if cmd.Flags().Changed(name) {
			*dst = val
		}
	}
	set("run-dir", &cfg.RunDir, f.runDir)
	set("state-dir", &cfg.StateDir, f.stateDir)
	set("socket", &cfg.Socket, f.socket)
	set("admin-socket", &cfg.AdminSocket, f.adminSocket)
	set("database", &cfg.Database, f.dbPath)
	set("log-level", &cfg.LogLevel, f.logLevel)
	set("log-format", &cfg.LogFormat, f.logFormat)
	return cfg, cfg.Resolve()
}
