// Package schema holds crisp's numbered, append-only SQLite migrations
// (NNNN_what.sql). It only embeds them; package db applies them.
package schema

import "embed"

// FS holds every migration file.
//
//go:embed *.sql
var FS embed.FS
