-- name: InsertReconcileRun :exec
INSERT INTO reconcile_runs (trigger, dry_run, started_at, duration_ns, actions, counts, errors)
VALUES (:trigger, :dry_run, :started_at, :duration_ns, :actions, :counts, :errors);

-- name: ListReconcileRuns :many
-- The newest passes first.
SELECT * FROM reconcile_runs ORDER BY id DESC LIMIT ?;
