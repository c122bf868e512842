package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/crisp-cri/crisp/cmd/internal/config"
	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/reconciler"
	"github.com/crisp-cri/crisp/reconciler/node"
	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// openState opens the state database, checking it after an unclean stop.
// A corrupt one (not a database, or failing quick_check) is moved aside to
// <database>.corrupt-<time>, never deleted, and a fresh one takes its
// place; so does a missing one. Either way the startup reconcile then
// rebuilds every pod and container from the node.
func openState(ctx context.Context, cfg config.Config, clean bool, log *slog.Logger) (*db.Store, error) {
	if _, err := os.Stat(cfg.Database); errors.Is(err, os.ErrNotExist) {
		log.Warn("no state database; starting a new one, rebuilt from the node", slog.String("database", cfg.Database))
	}
	store, err := openChecked(ctx, cfg, clean, log)
	if !errors.Is(err, db.ErrCorrupt) {
		return store, err
	}
	aside := cfg.Database + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000Z")
	log.Error("state database is corrupt; moving it aside and rebuilding from the node",
		slog.String("database", cfg.Database), slog.String("moved_to", aside), slog.Any(logkey.Err, err))
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Rename(cfg.Database+suffix, aside+suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("move corrupt state database aside: %w", err)
		}
	}
	return db.Open(ctx, cfg.Database, db.Options{Synchronous: cfg.SQLite.Synchronous})
}

func openChecked(ctx context.Context, cfg config.Config, clean bool, log *slog.Logger) (*db.Store, error) {
	store, err := db.Open(ctx, cfg.Database, db.Options{Synchronous: cfg.SQLite.Synchronous})
	if err != nil {
		return nil, err
	}
	if !clean {
		log.Warn("previous crispd did not stop cleanly; checking the database", slog.String("database", cfg.Database))
		if err := store.QuickCheck(ctx); err != nil {
			store.Close()
			return nil, fmt.Errorf("state database %s: %w", cfg.Database, err)
		}
	}
	return store, nil
}

// startReconciler builds the reconciler over the node and runs the
// startup pass, which must end before the CRI socket opens. A pass that
// fails, or actions that fail, are logged and recorded, never fatal: the
// periodic loop tries again, and a crispd that answers serves kubelet
// better than one that does not start.
func startReconciler(ctx context.Context, cfg config.Config, store *db.Store, n *node.Node, onPass func(reconciler.Report), log *slog.Logger) *reconciler.Reconciler {
	rec := reconciler.New(store, n, n, n, reconciler.Config{
		Interval: cfg.Reconciler.Interval.Duration, Grace: cfg.Reconciler.Grace.Duration,
		ActionTimeout: cfg.Reconciler.ActionTimeout.Duration, BootID: bootID(cfg.Reconciler.BootIDFile),
		OnPass: onPass,
	}, log.With(slog.String("service", "reconciler")))
	rep, err := rec.Reconcile(ctx, reconciler.TriggerStartup, false)
	if err != nil {
		log.Error("startup reconcile failed; serving anyway", slog.Any(logkey.Err, err))
		return rec
	}
	log.Info("startup reconcile done", slog.Int("actions", len(rep.Outcomes)), slog.Int("failed", rep.Failed()),
		slog.Duration(logkey.Took, rep.Duration))
	return rec
}
