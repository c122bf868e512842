package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	// rpcTimeout and runPodTimeout are kubelet's budgets.
	rpcTimeout    = 2 * time.Minute
	runPodTimeout = 4 * time.Minute
	// cleanupTimeout bounds the best-effort cleanup after an error.
	cleanupTimeout = 10 * time.Minute
)

// bench is one run against one endpoint. Its methods are called from one
// goroutine, except the per-pod work they hand to workers.
type bench struct {
	cfg      config
	d        daemon // nil: no restart phase, no daemon memory
	monitors *regexp.Regexp
	logDir   string // the pods' log directories live under it

	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
	img  runtimeapi.ImageServiceClient

	rec    *recorder
	rep    *Report
	podIDs []string // populated pods by index
}

func newBench(cfg config, d daemon) (*bench, error) {
	b := &bench{cfg: cfg, d: d, rec: newRecorder(), rep: &Report{Endpoint: cfg.endpoint, Image: cfg.image,
		Pods: cfg.pods, Containers: cfg.containers, HotPods: hotCount(cfg.pods, cfg.hot), Workers: cfg.workers,
		Burst: cfg.burst, Started: time.Now()}}
	if cfg.monitorPattern != "" {
		b.monitors = regexp.MustCompile(cfg.monitorPattern) // checked by parseFlags
	}
	var err error
	if b.logDir, err = os.MkdirTemp("", "crisp-scale-logs-"); err != nil {
		return nil, err
	}
	if err := b.redial(); err != nil {
		os.RemoveAll(b.logDir)
		return nil, err
	}
	return b, nil
}

func (b *bench) close() {
	if b.conn != nil {
		b.conn.Close()
	}
	os.RemoveAll(b.logDir)
}

// dial opens a client connection as kubelet does: 16 MiB messages.
func dial(endpoint string) (*grpc.ClientConn, error) {
	target := endpoint
	if strings.HasPrefix(endpoint, "/") {
		target = "unix://" + endpoint
	}
	return grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)))
}

// redial replaces the connection: after a restart the old one may sit in
// gRPC's reconnect backoff.
func (b *bench) redial() error {
	conn, err := dial(b.cfg.endpoint)
	if err != nil {
		return fmt.Errorf("dial %s: %w", b.cfg.endpoint, err)
	}
	if b.conn != nil {
		b.conn.Close()
	}
	b.conn, b.rt, b.img = conn, runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
	return nil
}

// run runs the selected phases. After an error or an interrupt it removes
// every pod it made, whatever the phases; without the cleanup phase a
// successful run leaves its pods in place.
func (b *bench) run(ctx context.Context) (retErr error) {
	defer func() {
		if retErr == nil && ctx.Err() == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		fmt.Fprintln(os.Stderr, "scale: removing every pod of namespace", b.cfg.namespace)
		// A fresh connection: after a failed restart the old one may be in
		// gRPC's reconnect backoff, where calls fail at once.
		if err := b.redial(); err != nil {
			retErr = errors.Join(retErr, err)
			return
		}
		if err := b.removePods(cctx, false); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("cleanup: %w", err))
		}
		if err := b.countLeftovers(cctx); err == nil && b.rep.Leftovers == 0 {
			retErr = errors.Join(retErr, b.removeCgroups())
		}
		if retErr == nil {
			retErr = context.Cause(ctx)
		}
	}()
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	v, err := b.rt.Version(vctx, &runtimeapi.VersionRequest{})
	cancel()
	if err != nil {
		return fmt.Errorf("version: %w", err)
	}
	b.rep.Runtime = v.RuntimeName + " " + v.RuntimeVersion
	if err := b.ensureImage(ctx); err != nil {
		return err
	}
	if err := b.removePods(ctx, false); err != nil {
		return fmt.Errorf("remove leftovers of an earlier run: %w", err)
	}
	p := b.cfg.phases
	steps := []struct {
		name string
		on   bool
		f    func(context.Context) error
	}{
		{"burst on the empty node", p["burst"] && b.cfg.burst > 0, func(ctx context.Context) error { return b.runBurst(ctx, "empty") }},
		{"populate", p["populate"], b.populate},
		{"lists", p["lists"], b.lists},
		{"stats", p["stats"], b.stats},
		{"burst on the full node", p["burst"] && b.cfg.burst > 0 && p["populate"], func(ctx context.Context) error { return b.runBurst(ctx, "full") }},
		{"memory", p["memory"], b.memory},
		{"restart", p["restart"], b.restarts},
		{"cleanup", p["cleanup"], b.cleanup},
	}
	for _, s := range steps {
		if !s.on {
			continue
		}
		fmt.Fprintf(os.Stderr, "scale: %s\n", s.name)
		if err := s.f(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if !p["cleanup"] {
		b.rep.note("no cleanup phase: the pods of namespace %s are left in place", b.cfg.namespace)
	}
	return nil
}

// ensureImage pulls the image unless the runtime has it.
func (b *bench) ensureImage(ctx context.Context) error {
	spec := &runtimeapi.ImageSpec{Image: b.cfg.image}
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	st, err := b.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec})
	if err != nil {
		return fmt.Errorf("image status %s: %w", b.cfg.image, err)
	}
	if st.Image != nil {
		return nil
	}
	start := time.Now()
	_, err = b.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec})
	b.rec.add("PullImage", time.Since(start), -1, err)
	if err != nil {
		return fmt.Errorf("pull %s: %w", b.cfg.image, err)
	}
	return nil
}

// timed runs one RPC under its own timeout and records it as op.
func (b *bench) timed(ctx context.Context, op string, timeout time.Duration, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	err := f(ctx)
	b.rec.add(op, time.Since(start), -1, err)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// parallel calls f(ctx, i) for i in [0, n) on workers goroutines fed from
// a channel. The first error cancels the rest and is returned.
func parallel(ctx context.Context, workers, n int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := range jobs {
				if ctx.Err() != nil {
					continue // drain
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}
