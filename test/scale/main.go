// Command scale is crisp's scale benchmark: it fills a CRI runtime with N
// pods of M running containers, then times the lists, the stats, a burst
// of pods started at once, daemon restarts and the cleanup, and reports
// percentiles, response sizes and the memory of the daemon and its
// monitors. It speaks only CRI over the runtime's unix socket, so the same
// run measures crisp and any other CRI runtime (containerd, CRI-O).
//
// `make bench-scale` runs it against a private crispd (-start-crispd);
// docs/bench-scale.md shows how to run it against another runtime.
//
// It imports nothing of crisp but the test image builder; nothing imports
// it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"regexp"
	"slices"
	"syscall"
)

// phases are the parts of a run, in the order they run whatever the order
// of -phases: burst runs on the empty node before populate and again on
// the full node after stats.
var phases = []string{"populate", "lists", "stats", "burst", "memory", "restart", "cleanup"}

type config struct {
	endpoint       string
	image          string
	namespace      string
	cgroupRoot     string
	runtimeHandler string
	pods           int
	containers     int
	workers        int
	hot            float64
	burst          int
	listIters      int
	concurrency    int
	phases         map[string]bool
	jsonPath       string
	pidFile        string
	startCmd       string
	monitorPattern string
	startCrispd    string
	crispdLog      string
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	var phaseList string
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: scale [flags]\n\n"+
			"Fills a CRI runtime with -pods x -containers running containers and times lists, stats, a\n"+
			"burst of pods, daemon restarts and the cleanup. Every pod it makes is in -namespace, which a\n"+
			"run empties first and last. See docs/bench-scale.md.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.endpoint, "endpoint", "", "CRI `endpoint`, e.g. unix:///run/containerd/containerd.sock (required unless -start-crispd)")
	fs.StringVar(&c.image, "image", "", "image of the containers, `ref`; pulled if absent; it must have sleep (default with -start-crispd: a busybox served on 127.0.0.1)")
	fs.StringVar(&c.namespace, "namespace", "crisp-scale", "pod namespace of every pod made; pods of this namespace are removed at start and end")
	fs.StringVar(&c.cgroupRoot, "cgroup-root", "/crisp-scale", "cgroupfs `path` under which each pod gets its cgroup parent, <path>/<pod name>, as kubelet gives /kubepods/...; emptied at the end; \"\": no cgroup parent")
	fs.StringVar(&c.runtimeHandler, "runtime-handler", "", "RuntimeHandler of RunPodSandbox")
	fs.IntVar(&c.pods, "pods", 100, "pods to populate")
	fs.IntVar(&c.containers, "containers", 5, "running containers per pod")
	fs.IntVar(&c.workers, "workers", 4, "concurrent workers for populate and cleanup")
	fs.Float64Var(&c.hot, "hot", 0.2, "fraction of pods (and their containers) labelled tier=hot")
	fs.IntVar(&c.burst, "burst", 20, "pods of 1 container started at once in the burst phase")
	fs.IntVar(&c.listIters, "list-iters", 50, "sequential calls of each list; the concurrent lists make list-iters/5 waves of -concurrency calls")
	fs.IntVar(&c.concurrency, "concurrency", 20, "calls at once in the concurrent lists")
	fs.StringVar(&phaseList, "phases", "populate,lists,stats,burst,memory,restart,cleanup", "phases to run, comma-separated")
	fs.StringVar(&c.jsonPath, "json", "", "also write the report as JSON to `file`")
	fs.StringVar(&c.pidFile, "daemon-pid-file", "", "file holding the daemon's pid (restart and memory phases)")
	fs.StringVar(&c.startCmd, "start-cmd", "", "shell `command` that starts the daemon again after the restart phase stopped it; it may return at once (background the daemon)")
	fs.StringVar(&c.monitorPattern, "monitor-pattern", "", "`regexp` matched against each process's command line: the per-container monitors whose memory is summed (e.g. '^/usr/bin/conmon ' or 'containerd-shim.* -address /run/containerd/containerd.sock ')")
	fs.StringVar(&c.crispdLog, "crispd-log", "", "with -start-crispd: keep crispd's log in this `file`, at debug level (crispd's step timings); default: at info level in the temp dir, removed at the end")
	fs.StringVar(&c.startCrispd, "start-crispd", "", "start this crispd `binary` on a temp dir with a loopback-only test network and a 127.0.0.1 registry, and measure it (root; what make bench-scale does)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.phases = map[string]bool{}
	for _, p := range splitList(phaseList) {
		if !slices.Contains(phases, p) {
			return c, fmt.Errorf("unknown phase %q (phases: %v)", p, phases)
		}
		c.phases[p] = true
	}
	switch {
	case c.endpoint == "" && c.startCrispd == "":
		return c, errors.New("-endpoint or -start-crispd is required")
	case c.endpoint != "" && c.startCrispd != "":
		return c, errors.New("-endpoint and -start-crispd exclude each other")
	case c.image == "" && c.startCrispd == "":
		return c, errors.New("-image is required with -endpoint")
	case c.pods < 0 || c.containers < 1 || c.workers < 1 || c.burst < 0 || c.listIters < 1 || c.concurrency < 1:
		return c, errors.New("-pods, -burst >= 0; -containers, -workers, -list-iters, -concurrency >= 1")
	case c.hot < 0 || c.hot > 1:
		return c, errors.New("-hot is a fraction between 0 and 1")
	case c.namespace == "":
		return c, errors.New("-namespace must not be empty")
	case c.cgroupRoot != "" && (!path.IsAbs(c.cgroupRoot) || path.Clean(c.cgroupRoot) == "/"):
		return c, errors.New("-cgroup-root must be an absolute path below /")
	}
	if c.monitorPattern != "" {
		if _, err := regexp.Compile(c.monitorPattern); err != nil {
			return c, fmt.Errorf("-monitor-pattern: %w", err)
		}
	}
	return c, nil
}

func run(args []string, stdout io.Writer) (retErr error) {
	cfg, err := parseFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var d daemon
	if cfg.startCrispd != "" {
		env, err := startLocal(ctx, cfg.startCrispd, cfg.crispdLog)
		if err != nil {
			return err
		}
		defer func() {
			if retErr != nil && ctx.Err() == nil { // not after a ^C
				fmt.Fprintf(os.Stderr, "scale: the end of crispd's log:\n%s\n", tail(env.daemon.logPath, 30))
			}
			if err := env.close(); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("tear down local crispd: %w", err))
			}
		}()
		cfg.endpoint, d = env.endpoint, env.daemon
		if cfg.image == "" {
			cfg.image = env.image
		}
		if cfg.monitorPattern == "" {
			cfg.monitorPattern = env.monitorPattern
		}
	} else if cfg.pidFile != "" {
		d = &shellDaemon{pidFile: cfg.pidFile, startCmd: cfg.startCmd}
	}

	b, err := newBench(cfg, d)
	if err != nil {
		return err
	}
	defer b.close()
	runErr := b.run(ctx)
	b.rep.Ops = b.rec.summaries()
	if err := writeTable(stdout, b.rep); err != nil {
		return err
	}
	if cfg.jsonPath != "" {
		if err := writeJSON(cfg.jsonPath, b.rep); err != nil {
			return errors.Join(runErr, err)
		}
	}
	if runErr == nil && b.rep.Leftovers > 0 {
		runErr = fmt.Errorf("%d pods or containers of namespace %s left after cleanup", b.rep.Leftovers, cfg.namespace)
	}
	return runErr
}
