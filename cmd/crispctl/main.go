// Command crispctl is crisp's admin CLI: read-only SQL over the node-state
// database, reconcile-now and daemon info over the admin socket. This
// package is wiring only.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/crisp-cri/crisp/cmd/internal/config"
	"github.com/crisp-cri/crisp/cri/adminpb"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "crispctl:", err)
		os.Exit(1)
	}
}

// globals locate crispd: its config file, or the paths themselves.
type globals struct {
	config, runDir, stateDir, adminSocket, database string
	timeout                                         time.Duration
}

func newRootCommand() *cobra.Command {
	var g globals
	root := &cobra.Command{
		Use:   "crispctl",
		Short: "Inspect and repair a crisp node",
		Long: `crispctl is the admin CLI of crisp, a Kubernetes CRI runtime.

It reads the node-state database directly (read-only: any statement that would
write is refused and the file is left untouched) and talks to crispd over its
root-only admin socket. It finds both the way crispd does: from --config (or
/etc/crisp/crisp.toml) over the built-in defaults, with flags on top.

For pods and containers as kubelet sees them, use crictl; crispctl shows what
crictl cannot: the database behind them, the reconciler and the daemon.`,
		Example: `  crispctl sql "SELECT namespace, name, state, handler, trust_reason FROM pods"
  crispctl sql --json "SELECT * FROM containers_view WHERE state = 'running'"
  crispctl reconcile --dry-run     # what would a reconcile pass repair?
  crispctl reconcile               # repair it now
  crispctl info                    # versions, paths, runtime handlers
  crispctl image load ./app.tar    # import an image for an air-gapped node
  crispctl image ls`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.config, "config", "", "crispd's TOML config file (default "+config.DefaultPath+" if it exists)")
	pf.StringVar(&g.runDir, "run-dir", "", "crispd's run_dir (where its sockets are)")
	pf.StringVar(&g.stateDir, "state-dir", "", "crispd's state_dir (where its database is)")
	pf.StringVar(&g.adminSocket, "admin-socket", "", "admin socket path (overrides the config)")
	pf.StringVar(&g.database, "database", "", "database path (overrides the config)")
	pf.DurationVar(&g.timeout, "timeout", 2*time.Minute, "how long to wait for crispd")
	root.AddCommand(newSQLCommand(&g), newReconcileCommand(&g), newInfoCommand(&g), newImageCommand(&g))
	return root
}

// load resolves crispd's paths from the config and the flags.
func (g *globals) load(cmd *cobra.Command) (config.Config, error) {
	cfg, err := config.Load(g.config)
	if err != nil {
		return cfg, err
	}
	for name, dst := range map[string]*string{"run-dir": &cfg.RunDir, "state-dir": &cfg.StateDir,
		"admin-socket": &cfg.AdminSocket, "database": &cfg.Database} {
		if f := cmd.Flag(name); f != nil && f.Changed {
			*dst = f.Value.String()
		}
	}
	return cfg, cfg.Resolve()
}

// admin connects to crispd's admin socket and returns a context bounded by
// --timeout; done releases both.
func (g *globals) admin(cmd *cobra.Command) (context.Context, adminpb.AdminClient, func(), error) {
	client, closeConn, err := g.dialAdmin(cmd)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
	return ctx, client, func() { cancel(); closeConn() }, nil
}

// dialAdmin connects to crispd's admin socket.
func (g *globals) dialAdmin(cmd *cobra.Command) (adminpb.AdminClient, func(), error) {
	cfg, err := g.load(cmd)
	if err != nil {
		return nil, nil, err
	}
	if _, err := os.Stat(cfg.AdminSocket); err != nil {
		return nil, nil, fmt.Errorf("crispd's admin socket: %w (is crispd running? is --config or --run-dir right?)", err)
	}
	conn, err := grpc.NewClient("unix://"+cfg.AdminSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", cfg.AdminSocket, err)
	}
	return adminpb.NewAdminClient(conn), func() { conn.Close() }, nil
}

func (g *globals) context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), g.timeout)
}

// absPath makes a path absolute, since crispd resolves it, not crispctl.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
