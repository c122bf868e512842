// Package queries holds crisp's named SQL statements, one file per table,
// each statement under a "-- name: X :one|:many|:exec" header. It only
// embeds them; package db parses and checks them when the store opens.
package queries

import "embed"

// FS holds every query file.
//
//go:embed *.sql
var FS embed.FS
