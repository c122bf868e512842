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
// rebuilds every pod and container from the node. rowsCurrent says the
// rows are those a crispd of this boot kept (the database was there and
// its last pass ran in this boot): what kubelet last saw.
func openState(ctx context.Context, cfg config.Config, clean bool, log *slog.Logger) (_ *db.Store, rowsCurrent bool, _ error) {
	_, err := os.Stat(cfg.Database)
	existed := err == nil
	if errors.Is(err, os.ErrNotExist) {
		log.Warn("no state database; starting a new one, rebuilt from the node", slog.String("database", cfg.Database))
	}
	store, err := openChecked(ctx, cfg, clean, log)
	if err == nil {
		// The rows are kubelet's view only if they are this boot's.
		last, err := store.NodeValue(ctx, db.NodeBootID)
		if err != nil {
			store.Close()
			return nil, false, err
		}
		return store, existed && last != "" && last == bootID(cfg.Reconciler.BootIDFile), nil
	}
	if !errors.Is(err, db.ErrCorrupt) {
		return nil, false, err
	}
	aside := cfg.Database + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000Z")
	log.Error("state database is corrupt; moving it aside and rebuilding from the node",
		slog.String("database", cfg.Database), slog.String("moved_to", aside), slog.Any(logkey.Err, err))
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Rename(cfg.Database+suffix, aside+suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, false, fmt.Errorf("move corrupt state database aside: %w", err)
		}
	}
	store, err = db.Open(ctx, cfg.Database, db.Options{Synchronous: cfg.SQLite.Synchronous})
	return store, false, err
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

// newReconciler builds the reconciler over the node.
func newReconciler(cfg config.Config, store *db.Store, n *node.Node, onPass func(reconciler.Report), log *slog.Logger) *reconciler.Reconciler {
	return reconciler.New(store, n, n, n, reconciler.Config{
		Interval: cfg.Reconciler.Interval.Duration, Grace: cfg.Reconciler.Grace.Duration,
		ActionTimeout: cfg.Reconciler.ActionTimeout.Duration, BootID: bootID(cfg.Reconciler.BootIDFile),
		OnPass: onPass,
	}, log.With(slog.String("service", "reconciler")))
}

// startupReconcile runs the startup pass, which repairs what a crash or a
// reboot left and must run alone: the servers hold every call that
// changes the node until it ends. A pass that fails, or actions that
// fail, are logged and recorded, never fatal: the periodic loop tries
// again, and a crispd that answers serves kubelet better than one that
// does not start.
func startupReconcile(ctx context.Context, rec *reconciler.Reconciler, log *slog.Logger) {
	rep, err := rec.Reconcile(ctx, reconciler.TriggerStartup, false)
	if err != nil {
		log.Error("startup reconcile failed; serving anyway", slog.Any(logkey.Err, err))
		return
	}
	log.Info("startup reconcile done", slog.Int("actions", len(rep.Outcomes)), slog.Int("failed", rep.Failed()),
		slog.Duration(logkey.Took, rep.Duration))
}
