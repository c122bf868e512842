package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
)

// TestMetricsEndpoint turns the Prometheus endpoint on, runs a runc pod
// with a container and a few lists, and reads /metrics: per-RPC latency
// histograms and counts by code, containers by state and runtime, the
// monitor count.
func TestMetricsEndpoint(t *testing.T) {
	harness.RequireRoot(t)
	addr := freeLoopbackAddr(t)
	d := harness.Start(t, harness.WithTOML(fmt.Sprintf("metrics_address = %q\n", addr)))
	image := withBusybox(t, d)
	runPodWithContainer(t, d, image, podConfig("metrics"), "runc")
	ctx := context.Background()
	for range 3 {
		if _, err := d.Runtime().ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Runtime().ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "0123456789ab"}); err == nil {
		t.Fatal("ContainerStatus(unknown) succeeded")
	}

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	text := string(body)
	for _, c := range []struct {
		series string // a regexp of the series, without its value
		min    float64
	}{
		{`grpc_server_handling_seconds_count\{grpc_method="ListContainers",grpc_service="runtime.v1.RuntimeService",grpc_type="unary"\}`, 3},
		{`grpc_server_handling_seconds_bucket\{grpc_method="RunPodSandbox",grpc_service="runtime.v1.RuntimeService",grpc_type="unary",le="\+Inf"\}`, 1},
		{`grpc_server_handled_total\{grpc_code="OK",grpc_method="CreateContainer",grpc_service="runtime.v1.RuntimeService",grpc_type="unary"\}`, 1},
		{`grpc_server_handled_total\{grpc_code="NotFound",grpc_method="ContainerStatus",grpc_service="runtime.v1.RuntimeService",grpc_type="unary"\}`, 1},
		{`crisp_containers\{runtime="runc",state="running"\}`, 1},
		{`crisp_container_monitors`, 1},
	} {
		m := regexp.MustCompile(`(?m)^` + c.series + ` (\S+)$`).FindStringSubmatch(text)
		if m == nil {
			t.Errorf("/metrics has no %s", c.series)
			continue
		}
		if v, err := strconv.ParseFloat(m[1], 64); err != nil || v < c.min {
			t.Errorf("%s = %s, want at least %v", c.series, m[1], c.min)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}
}

// freeLoopbackAddr is a 127.0.0.1 port free a moment ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
