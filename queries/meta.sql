-- name: CreateMigrationsTable :exec
-- The one table that exists before any migration: which ones were applied.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
) STRICT;

-- name: AppliedMigrations :many
SELECT version FROM schema_migrations ORDER BY version;

-- name: RecordMigration :exec
INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?);

-- name: QuickCheck :many
PRAGMA quick_check;

-- name: SQLiteVersion :one
SELECT sqlite_version();
