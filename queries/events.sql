-- name: InsertEvent :exec
INSERT INTO events (at, kind, object_id, type, detail) VALUES (:at, :kind, :object_id, :type, :detail);

-- name: ListEvents :many
-- Events after a sequence number, oldest first.
SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?;
