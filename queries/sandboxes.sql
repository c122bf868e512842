-- name: InsertSandbox :exec
INSERT INTO sandboxes (id, name, kube_name, kube_namespace, kube_uid, attempt, state, handler, trust,
                       trust_reason, privileged, netns_path, ips, infra_id, log_dir, created_at, updated_at,
                       labels, annotations, config, config_hash)
VALUES (:id, :name, :kube_name, :kube_namespace, :kube_uid, :attempt, :state, :handler, :trust,
        :trust_reason, :privileged, :netns_path, :ips, :infra_id, :log_dir, :created_at, :updated_at,
        :labels, :annotations, :config, :config_hash);

-- name: GetSandbox :one
SELECT * FROM sandboxes WHERE id = ?;

-- name: ResolveSandboxID :many
-- A range scan on the primary key: every id that starts with the prefix.
-- Two rows are enough to call the prefix ambiguous.
SELECT id FROM sandboxes WHERE id >= ? AND id < ? ORDER BY id LIMIT 2;

-- name: ListSandboxes :many
-- Optional filters: '' means any.
SELECT s.* FROM sandboxes s
WHERE (:id_from = '' OR (s.id >= :id_from AND s.id < :id_to))
  AND (:state = '' OR s.state = :state)
ORDER BY s.created_at, s.id;

-- name: ListSandboxesByLabels :many
-- As ListSandboxes, for a label selector (a JSON object; every pair must
-- match). The CROSS JOIN makes SQLite walk labels_by_key_value once per
-- wanted pair instead of scanning the table.
SELECT s.* FROM sandboxes s
WHERE s.id IN (
        SELECT l.object_id
        FROM json_each(:labels) AS want
        CROSS JOIN labels l ON l.kind = 'pod' AND l.key = want.key AND l.value = want.value
        GROUP BY l.object_id
        HAVING count(*) = :label_count)
  AND (:id_from = '' OR (s.id >= :id_from AND s.id < :id_to))
  AND (:state = '' OR s.state = :state)
ORDER BY s.created_at, s.id;

-- name: UpdateSandboxState :exec
-- Moves a sandbox only from one of the allowed states (a JSON array), so
-- that a late writer cannot undo a newer transition.
UPDATE sandboxes SET state = :state, updated_at = :updated_at
WHERE id = :id AND state IN (SELECT value FROM json_each(:from_states));

-- name: DeleteSandbox :exec
DELETE FROM sandboxes WHERE id = ?;

-- name: MarkSandboxReady :exec
-- The last step of RunPodSandbox: side effects are in place, record them.
UPDATE sandboxes
SET state = 'ready', netns_path = :netns_path, ips = :ips, infra_id = :infra_id, updated_at = :updated_at
WHERE id = :id AND state = 'creating';
