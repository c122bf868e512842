-- name: InsertContainer :exec
INSERT INTO containers (id, sandbox_id, name, kube_name, attempt, image, image_ref, state, pid, pid_start,
                        exit_code, reason, message, created_at, started_at, finished_at, updated_at, log_path,
                        labels, annotations, config, config_hash, run_user, resources, stop_signal)
VALUES (:id, :sandbox_id, :name, :kube_name, :attempt, :image, :image_ref, :state, :pid, :pid_start,
        :exit_code, :reason, :message, :created_at, :started_at, :finished_at, :updated_at, :log_path,
        :labels, :annotations, :config, :config_hash, :run_user, :resources, :stop_signal);

-- name: GetContainer :one
SELECT * FROM containers WHERE id = ?;

-- name: ResolveContainerID :many
-- See ResolveSandboxID.
SELECT id FROM containers WHERE id >= ? AND id < ? ORDER BY id LIMIT 2;

-- name: ListContainers :many
-- Optional filters: '' means any.
SELECT c.* FROM containers c
WHERE (:id_from = '' OR (c.id >= :id_from AND c.id < :id_to))
  AND (:sandbox_id = '' OR c.sandbox_id = :sandbox_id)
  AND (:state = '' OR c.state = :state)
ORDER BY c.created_at, c.id;

-- name: ListContainersByLabels :many
-- As ListContainers, for a label selector (a JSON object; every pair must
-- match). The CROSS JOIN makes SQLite walk labels_by_key_value once per
-- wanted pair instead of scanning the table.
SELECT c.* FROM containers c
WHERE c.id IN (
        SELECT l.object_id
        FROM json_each(:labels) AS want
        CROSS JOIN labels l ON l.kind = 'container' AND l.key = want.key AND l.value = want.value
        GROUP BY l.object_id
        HAVING count(*) = :label_count)
  AND (:id_from = '' OR (c.id >= :id_from AND c.id < :id_to))
  AND (:sandbox_id = '' OR c.sandbox_id = :sandbox_id)
  AND (:state = '' OR c.state = :state)
ORDER BY c.created_at, c.id;

-- name: CountContainersInSandbox :one
SELECT count(*) FROM containers WHERE sandbox_id = ?;

-- name: UpdateContainerState :exec
-- See UpdateSandboxState.
UPDATE containers SET state = :state, updated_at = :updated_at
WHERE id = :id AND state IN (SELECT value FROM json_each(:from_states));

-- name: MarkContainerCreated :exec
-- The runtime made the container: record what its process resolved to.
UPDATE containers
SET state = 'created', run_user = :run_user, resources = :resources, stop_signal = :stop_signal, updated_at = :updated_at
WHERE id = :id AND state = 'creating';

-- name: SetContainerResources :exec
UPDATE containers SET resources = :resources, updated_at = :updated_at
WHERE id = :id AND state IN ('created', 'running');

-- name: MarkContainerStarted :exec
UPDATE containers
SET state = 'running', pid = :pid, pid_start = :pid_start, started_at = :started_at, updated_at = :updated_at
WHERE id = :id AND state = 'created';

-- name: MarkContainerExited :exec
-- An exit is recorded once: a second report for the same container is a no-op.
UPDATE containers
SET state = 'exited', exit_code = :exit_code, reason = :reason, message = :message,
    finished_at = :finished_at, updated_at = :updated_at
WHERE id = :id AND state IN ('created', 'running', 'unknown');

-- name: DeleteContainer :exec
DELETE FROM containers WHERE id = ?;

-- name: CountContainersByStateAndHandler :many
-- Containers by state and by their pod's runtime handler, for metrics.
SELECT c.state AS state, s.handler AS handler, count(*) AS n
FROM containers c JOIN sandboxes s ON s.id = c.sandbox_id
GROUP BY c.state, s.handler;
