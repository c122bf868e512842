-- name: InsertEvent :exec
INSERT INTO events (at, kind, object_id, type, detail) VALUES (:at, :kind, :object_id, :type, :detail);

-- name: ListEvents :many
-- Events after a sequence number, oldest first.
SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?;

-- name: LastEventSeq :one
-- The newest journal entry's sequence number, 0 for an empty journal: where
-- a new reader of the journal starts.
SELECT coalesce(max(seq), 0) FROM events;

-- name: ListEventsWithSandbox :many
-- As ListEvents, each entry with the pod its object belongs to: the object
-- itself for a pod, the container's pod while its row exists, '' after.
SELECT e.*,
       CASE e.kind
           WHEN 'pod' THEN e.object_id
           WHEN 'container' THEN coalesce((SELECT c.sandbox_id FROM containers c WHERE c.id = e.object_id), '')
           ELSE ''
       END AS sandbox_id
FROM events e
WHERE e.seq > ?
ORDER BY e.seq
LIMIT ?;
