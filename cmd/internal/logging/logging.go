// Package logging builds crisp's slog handler: tint (colour text) on a
// terminal, JSON otherwise, as chosen by log_format.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lmittmann/tint"
	"golang.org/x/term"
)

// New returns a logger writing to w at level ("debug", "info", "warn",
// "error") in format ("auto", "text", "json"). auto means text when w is a
// terminal. The level is kept in lvl, so that setting lvl later changes it.
func New(w io.Writer, lvl *slog.LevelVar, level, format string) (*slog.Logger, error) {
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	switch {
	case format == "json" || format == "auto" && !tty:
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl})), nil
	case format == "text" || format == "auto":
		return slog.New(tint.NewHandler(w, &tint.Options{Level: lvl, TimeFormat: time.RFC3339Nano, NoColor: !tty})), nil
	}
	return nil, fmt.Errorf("log format %q: want auto, text or json", format)
}
