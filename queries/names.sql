-- name: ReserveName :exec
INSERT INTO names (kind, name, owner_id, reserved_at) VALUES (:kind, :name, :owner_id, :reserved_at);

-- name: GetName :one
SELECT * FROM names WHERE kind = ? AND name = ?;

-- name: ReleaseName :exec
-- Only the owner releases: a stale release must not free a name that has
-- since been reserved by someone else.
DELETE FROM names WHERE kind = ? AND name = ? AND owner_id = ?;

-- name: ListNames :many
SELECT * FROM names ORDER BY kind, name;
