package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"syscall"

	"github.com/crisp-cri/crisp/cmd/internal/config"
	"github.com/crisp-cri/crisp/runtimes/layout"
	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// reloadOnHUP reloads the configuration on SIGHUP and applies what can
// change while crispd runs: the log level. Other changed keys are named in
// the log as needing a restart (at warn, so that a quieter new level
// still shows it). A config that does not load is logged and
// ignored: a typo must not take a running node down, and SIGHUP never ends
// crispd (its default action would). The returned stop ends the watch.
func reloadOnHUP(cur config.Config, reload func() (config.Config, error), level *slog.LevelVar, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
			}
			next, err := reload()
			if err != nil {
				log.Error("SIGHUP: configuration not reloaded", slog.Any(logkey.Err, err))
				continue
			}
			if err := level.UnmarshalText([]byte(next.LogLevel)); err != nil {
				log.Error("SIGHUP: log level not changed", slog.Any(logkey.Err, err))
				continue
			}
			restart := changedKeys(cur, next)
			log.Warn("SIGHUP: configuration reloaded", slog.String("log_level", next.LogLevel), slog.Any("need_restart", restart))
			cur.LogLevel = next.LogLevel
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}

// changedKeys names the top-level keys whose values differ, but for the
// log level, which a reload applies.
func changedKeys(a, b config.Config) []string {
	var out []string
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		f := va.Type().Field(i)
		if f.Name == "LogLevel" || reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			continue
		}
		out = append(out, f.Tag.Get("toml"))
	}
	return out
}

// makePrivateDirs creates crispd's directories owner-only and makes run_dir
// and state_dir 0700 if they were not: they hold the database, container
// bundles with their configs, and the sockets.
func makePrivateDirs(cfg config.Config, files layout.Layout) error {
	dirs := append([]string{cfg.RunDir, cfg.StateDir, filepath.Dir(cfg.Database), filepath.Dir(cfg.Socket), filepath.Dir(cfg.AdminSocket)}, files.Dirs()...)
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	for _, dir := range []string{cfg.RunDir, cfg.StateDir} {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("make %s owner-only: %w", dir, err)
		}
	}
	return nil
}
