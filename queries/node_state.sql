-- name: GetNodeValue :one
SELECT value FROM node_state WHERE key = ?;

-- name: SetNodeValue :exec
INSERT INTO node_state (key, value, updated_at) VALUES (?, ?, ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at;
