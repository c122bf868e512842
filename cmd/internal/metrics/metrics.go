// Package metrics is crispd's Prometheus endpoint: per-RPC latency
// histograms and counts by code, named as grpc-ecosystem's
// go-grpc-prometheus names them (what containerd exports); reconcile
// actions by kind; containers by state and runtime, read from the database
// at scrape time; and the Go runtime and process collectors. It is off by
// default and serves only on a loopback address.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/reconciler"
	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// Counter counts the containers on the node (db.Store does).
type Counter interface {
	CountContainers(ctx context.Context) ([]db.ContainerCount, error)
}

// Metrics holds crispd's collectors in a registry of its own.
type Metrics struct {
	reg      *prometheus.Registry
	handled  *prometheus.CounterVec
	handling *prometheus.HistogramVec
	actions  *prometheus.CounterVec
}

// New registers crispd's metrics; containers are counted from c at each
// scrape.
func New(c Counter, log *slog.Logger) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "RPCs completed on the server, by service, method and gRPC status code.",
		}, []string{"grpc_type", "grpc_service", "grpc_method", "grpc_code"}),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "grpc_server_handling_seconds",
			Help: "Time to handle an RPC, by service and method.",
			// From 1 ms (a list) to a minute (a big pull).
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"grpc_type", "grpc_service", "grpc_method"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crisp_reconcile_actions_total",
			Help: "Actions the reconciler applied, by kind, object and result (ok or failed).",
		}, []string{"kind", "object", "result"}),
	}
	m.reg.MustRegister(m.handled, m.handling, m.actions, &containers{c: c, log: log},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// UnaryInterceptor times and counts every unary RPC.
func (m *Metrics) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := next(ctx, req)
		m.observe("unary", info.FullMethod, start, err)
		return resp, err
	}
}

// StreamInterceptor times and counts every streaming RPC (GetContainerEvents
// is one), from its start to its end.
func (m *Metrics) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, next grpc.StreamHandler) error {
		start := time.Now()
		err := next(srv, ss)
		m.observe("server_stream", info.FullMethod, start, err)
		return err
	}
}

func (m *Metrics) observe(kind, fullMethod string, start time.Time, err error) {
	service, method := splitMethod(fullMethod)
	m.handling.WithLabelValues(kind, service, method).Observe(time.Since(start).Seconds())
	m.handled.WithLabelValues(kind, service, method, status.Code(err).String()).Inc()
}

// splitMethod splits "/runtime.v1.RuntimeService/ListContainers".
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", full
}

// ObservePass counts the actions of a reconcile pass (reconciler.Config.OnPass).
func (m *Metrics) ObservePass(rep reconciler.Report) {
	for _, o := range rep.Outcomes {
		result := "ok"
		if o.Err != nil {
			result = "failed"
		}
		m.actions.WithLabelValues(string(o.Kind), string(o.Object), result).Inc()
	}
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Listen opens addr for the endpoint, refusing anything but a loopback
// address: the figures name pods, and nothing on the network needs them
// unproxied.
func Listen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics_address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("metrics_address %q: must be a loopback address (127.0.0.1, [::1] or localhost)", addr)
	}
	return net.Listen("tcp", addr)
}

// Serve serves the endpoint on l until ctx ends.
func (m *Metrics) Serve(ctx context.Context, l net.Listener, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics endpoint stopped", slog.Any(logkey.Err, err))
	}
}

// containers collects container counts from the database at scrape time,
// so they are never stale and nothing has to keep them up to date.
type containers struct {
	c   Counter
	log *slog.Logger
}

var (
	containersDesc = prometheus.NewDesc("crisp_containers",
		"Containers on the node, by state and by their pod's runtime handler.", []string{"state", "runtime"}, nil)
	monitorsDesc = prometheus.NewDesc("crisp_container_monitors",
		"Containers with a monitor process of their own (conmon, or crisp's monitor for gVisor): the created and running ones.", nil, nil)
)

func (c *containers) Describe(ch chan<- *prometheus.Desc) {
	ch <- containersDesc
	ch <- monitorsDesc
}

func (c *containers) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.c.CountContainers(ctx)
	if err != nil {
		c.log.Warn("metrics: containers not counted", slog.Any(logkey.Err, err))
		ch <- prometheus.NewInvalidMetric(containersDesc, err)
		return
	}
	monitors := 0
	for _, n := range counts {
		ch <- prometheus.MustNewConstMetric(containersDesc, prometheus.GaugeValue, float64(n.N), string(n.State), n.Handler)
		if n.State == db.ContainerCreated || n.State == db.ContainerRunning {
			monitors += n.N
		}
	}
	ch <- prometheus.MustNewConstMetric(monitorsDesc, prometheus.GaugeValue, float64(monitors))
}
