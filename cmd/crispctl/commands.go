package main

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/crisp-cri/crisp/cri/adminpb"
	"github.com/crisp-cri/crisp/db"
)

func newSQLCommand(g *globals) *cobra.Command {
	var asJSON, asCSV bool
	cmd := &cobra.Command{
		Use:   "sql QUERY",
		Short: "Run a read-only SQL query over the node-state database",
		Long: `Run one read-only SQL query over crisp's SQLite database and print the rows.

The database is opened read-only and every statement is checked before it runs:
INSERT, UPDATE, DELETE, DDL, ATTACH, transactions and PRAGMAs that change state
are refused, and the file is left byte-identical. It works whether crispd runs
or not. The views pods, containers_view, recent_events and reconcile_history
have stable columns (see README.md); the tables are sandboxes, containers,
names, labels, events and reconcile_runs.`,
		Example: `  crispctl sql "SELECT * FROM pods"
  crispctl sql --csv "SELECT name, state, exit_code FROM containers_view"
  crispctl sql "SELECT key, value, count(*) FROM labels GROUP BY key, value"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format := "table"
			switch {
			case asJSON && asCSV:
				return fmt.Errorf("--json and --csv are exclusive")
			case asJSON:
				format = "json"
			case asCSV:
				format = "csv"
			}
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := g.context(cmd)
			defer cancel()
			ro, err := db.OpenReadOnly(ctx, cfg.Database)
			if err != nil {
				return err
			}
			defer ro.Close()
			res, err := ro.Query(ctx, args[0])
			if err != nil {
				return err
			}
			return writeResult(cmd.OutOrStdout(), res, format)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of objects")
	cmd.Flags().BoolVar(&asCSV, "csv", false, "print CSV with a header row")
	return cmd
}

func newReconcileCommand(g *globals) *cobra.Command {
	var dryRun, asJSON bool
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Run a reconciler pass now and print what it repaired",
		Long: `Ask crispd to compare its database with container storage and the OCI
runtimes now, and repair what disagrees: adopt, forget, mark-exited,
finish-or-rollback, orphan, clean (netns, IPs, pod dirs, mounts, cgroups left
over), release. With --dry-run nothing is changed and the
actions a pass would take are printed. Every pass is recorded in reconcile_runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, client, done, err := g.admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			resp, err := client.ReconcileNow(ctx, &adminpb.ReconcileNowRequest{DryRun: dryRun})
			if err != nil {
				return fmt.Errorf("reconcile: %w", err)
			}
			if asJSON {
				return printProto(cmd, resp)
			}
			printReport(cmd, resp)
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report what would be repaired; change nothing")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func printReport(cmd *cobra.Command, r *adminpb.ReconcileNowResponse) {
	out := cmd.OutOrStdout()
	verb := "repaired"
	if r.DryRun {
		verb = "would repair (dry run)"
	}
	fmt.Fprintf(out, "reconcile pass: %d actions %s in %s\n", len(r.Actions), verb, time.Duration(r.DurationNs).Round(time.Microsecond))
	if len(r.Actions) > 0 {
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ACTION\tOBJECT\tID\tREASON\tRESULT")
		for _, a := range r.Actions {
			result := "done"
			if r.DryRun {
				result = "planned"
			}
			if a.Error != "" {
				result = "failed: " + a.Error
			}
			id := shortObjectID(a.Id)
			switch {
			case id == "":
				id = a.Name // a resource of no pod or container
			case a.Name != "":
				id += " (" + a.Name + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Kind, a.Object, id, a.Reason, result)
		}
		tw.Flush()
	}
	var keys []string
	for k := range r.Counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, r.Counts[k]))
	}
	if len(parts) > 0 {
		fmt.Fprintln(out, "counts:", strings.Join(parts, " "))
	}
}

func newInfoCommand(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Show crispd's versions, paths and runtime handlers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, client, done, err := g.admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			info, err := client.Info(ctx, &adminpb.InfoRequest{})
			if err != nil {
				return fmt.Errorf("info: %w", err)
			}
			if asJSON {
				return printProto(cmd, info)
			}
			out := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "version\t%s\ngo\t%s\nCRI API\t%s\nSQLite\t%s\nschema version\t%d\n",
				info.Version, info.GoVersion, info.CriApiVersion, info.SqliteVersion, info.SchemaVersion)
			fmt.Fprintf(tw, "started\t%s\nclean start\t%v\nboot id\t%s\n",
				time.Unix(0, info.StartedUnixNano).UTC().Format(time.RFC3339), info.CleanStart, info.BootId)
			var keys []string
			for k := range info.Paths {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\n", k, info.Paths[k])
			}
			for _, h := range info.Handlers {
				fmt.Fprintf(tw, "handler %s\t%s (%s, root %s)\n", h.Name, h.Path, h.Class, h.Root)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

// printProto prints a response as indented JSON.
func printProto(cmd *cobra.Command, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
	return err
}

// shortObjectID shortens a 64-hex id as crictl does; anything else (a
// path, an address) is kept whole.
func shortObjectID(id string) string {
	if len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" {
		return id
	}
	return id[:13]
}
