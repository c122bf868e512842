package cri

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/adminpb"
	"github.com/crisp-cri/crisp/cri/validate"
	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/layout"
	"github.com/crisp-cri/crisp/runtimes/oci"
)

type fakeReconciler struct{ dryRuns []bool }

func (f *fakeReconciler) ReconcileNow(_ context.Context, dryRun bool) (*adminpb.ReconcileNowResponse, error) {
	f.dryRuns = append(f.dryRuns, dryRun)
	return &adminpb.ReconcileNowResponse{DryRun: dryRun, Counts: map[string]int32{"release": 1}}, nil
}

// serve starts the CRI and admin services on unix sockets in a temp dir,
// over a real SQLite store, and returns clients for both.
func serve(t *testing.T) (runtimeapi.RuntimeServiceClient, adminpb.AdminClient, *fakeReconciler) {
	t.Helper()
	dir := t.TempDir()
	store, err := db.Open(context.Background(), filepath.Join(dir, "state.db"), db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := NewGRPCServer(GRPCConfig{Log: log, Validator: validate.New(validate.DefaultLimits(), nil)})
	crisvc := NewServer(Deps{Store: store, Handlers: map[string]Handler{"runc": {
		Runtime: oci.New(oci.Handler{Name: "runc", Type: oci.TypeRunc, Path: "/usr/sbin/runc"}, "", layout.New(dir), log), Class: "trusted"}},
		Files: layout.New(dir), Log: log})
	runtimeapi.RegisterRuntimeServiceServer(srv, crisvc)
	rec := &fakeReconciler{}
	adminpb.RegisterAdminServer(srv, NewAdminServer(rec, store, nil, &adminpb.InfoResponse{Version: "test"}))
	sock := filepath.Join(dir, "crisp.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn), adminpb.NewAdminClient(conn), rec
}

func TestServerOverUnixSocket(t *testing.T) {
	rt, admin, rec := serve(t)
	ctx := context.Background()
	v, err := rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil || v.RuntimeName != RuntimeName {
		t.Errorf("Version() = %v, %v", v, err)
	}
	st, err := rt.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil || len(st.RuntimeHandlers) != 2 || st.Info["config"] == "" {
		t.Errorf("Status(verbose) = %v, %v; want one handler and config info", st, err)
	}
	if _, err := rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "abc"}); status.Code(err) != codes.NotFound {
		t.Errorf("PodSandboxStats(unknown) = %v, want NotFound", err)
	}
	resp, err := admin.ReconcileNow(ctx, &adminpb.ReconcileNowRequest{DryRun: true})
	if err != nil || !resp.DryRun || len(rec.dryRuns) != 1 || !rec.dryRuns[0] {
		t.Errorf("ReconcileNow(dry) = %v, %v; reconciler saw %v", resp, err, rec.dryRuns)
	}
	info, err := admin.Info(ctx, &adminpb.InfoRequest{})
	if err != nil || info.Version != "test" || info.SchemaVersion < 1 || info.SqliteVersion == "" {
		t.Errorf("Info() = %v, %v; want the static part plus schema and sqlite versions", info, err)
	}
}
