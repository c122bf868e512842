package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/reconciler"
)

type fakeCounter []db.ContainerCount

func (f fakeCounter) CountContainers(context.Context) ([]db.ContainerCount, error) { return f, nil }

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestReconcileActionsAndContainers(t *testing.T) {
	m := New(fakeCounter{
		{State: db.ContainerRunning, Handler: "runc", N: 3},
		{State: db.ContainerCreated, Handler: "runsc", N: 1},
		{State: db.ContainerExited, Handler: "runc", N: 2},
	}, slog.New(slog.DiscardHandler))
	m.ObservePass(reconciler.Report{Outcomes: []reconciler.Outcome{
		{Action: reconciler.Action{Kind: reconciler.Kind("forget"), Object: db.NameKind("container")}},
		{Action: reconciler.Action{Kind: reconciler.Kind("forget"), Object: db.NameKind("container")}},
		{Action: reconciler.Action{Kind: reconciler.Kind("clean"), Object: db.NameKind("netns")}, Err: errors.New("busy")},
	}})
	text := scrape(t, m)
	for _, want := range []string{
		`crisp_reconcile_actions_total{kind="forget",object="container",result="ok"} 2`,
		`crisp_reconcile_actions_total{kind="clean",object="netns",result="failed"} 1`,
		`crisp_containers{runtime="runc",state="running"} 3`,
		`crisp_containers{runtime="runsc",state="created"} 1`,
		`crisp_containers{runtime="runc",state="exited"} 2`,
		`crisp_container_monitors 4`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestListenOnlyOnLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "10.0.0.1:0", ":0", "example.com:9464", "nonsense"} {
		if l, err := Listen(addr); err == nil {
			l.Close()
			t.Errorf("Listen(%q) succeeded; want a loopback-only error", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0"} {
		l, err := Listen(addr)
		if err != nil {
			t.Errorf("Listen(%q) = %v", addr, err)
			continue
		}
		l.Close()
	}
}

func TestSplitMethod(t *testing.T) {
	s, m := splitMethod("/runtime.v1.RuntimeService/ListContainers")
	if s != "runtime.v1.RuntimeService" || m != "ListContainers" {
		t.Errorf("splitMethod = %q, %q", s, m)
	}
}
