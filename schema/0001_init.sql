-- crisp node state, first version. Times are Unix nanoseconds (0 = not yet).
-- Labels and annotations are JSON objects; the labels table is derived from
-- them by triggers so that label selectors are indexed lookups.

-- One row per CRI pod sandbox. State machine: see db/state.go.
CREATE TABLE sandboxes (
    id             TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 64),
    name           TEXT    NOT NULL UNIQUE,   -- crisp's full pod name, see db.SandboxName
    kube_name      TEXT    NOT NULL,
    kube_namespace TEXT    NOT NULL,
    kube_uid       TEXT    NOT NULL,
    attempt        INTEGER NOT NULL DEFAULT 0,
    state          TEXT    NOT NULL CHECK (state IN ('creating', 'ready', 'notready', 'removing')),
    handler        TEXT    NOT NULL,          -- runtime handler chosen once, at RunPodSandbox
    trust          TEXT    NOT NULL CHECK (trust IN ('trusted', 'untrusted')),
    trust_reason   TEXT    NOT NULL,
    privileged     INTEGER NOT NULL DEFAULT 0 CHECK (privileged IN (0, 1)),
    netns_path     TEXT    NOT NULL DEFAULT '',
    ips            TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(ips)),
    infra_id       TEXT    NOT NULL DEFAULT '', -- infra/pause container, '' when the pod has none
    log_dir        TEXT    NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    labels         TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(labels)),
    annotations    TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(annotations)),
    config         BLOB    NOT NULL,          -- CRI PodSandboxConfig, protobuf wire format
    config_hash    TEXT    NOT NULL           -- answers kubelet's retries, see db.CreateSandbox
) STRICT;

CREATE INDEX sandboxes_by_state ON sandboxes (state);

-- One row per CRI container. A sandbox cannot go while it has containers.
CREATE TABLE containers (
    id          TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 64),
    sandbox_id  TEXT    NOT NULL REFERENCES sandboxes (id) ON DELETE RESTRICT,
    name        TEXT    NOT NULL UNIQUE,      -- crisp's full container name, see db.ContainerName
    kube_name   TEXT    NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 0,
    image       TEXT    NOT NULL,             -- as requested
    image_ref   TEXT    NOT NULL DEFAULT '',  -- resolved image id
    state       TEXT    NOT NULL CHECK (state IN ('creating', 'created', 'running', 'exited', 'unknown', 'removing')),
    pid         INTEGER NOT NULL DEFAULT 0,
    pid_start   INTEGER NOT NULL DEFAULT 0,   -- process start time (clock ticks after boot): tells a recycled pid
    exit_code   INTEGER,                      -- NULL until the container exited
    reason      TEXT    NOT NULL DEFAULT '',
    message     TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    started_at  INTEGER NOT NULL DEFAULT 0,
    finished_at INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL,
    log_path    TEXT    NOT NULL DEFAULT '',
    labels      TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(labels)),
    annotations TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(annotations)),
    config      BLOB    NOT NULL,             -- CRI ContainerConfig, protobuf wire format
    config_hash TEXT    NOT NULL
) STRICT;

CREATE INDEX containers_by_sandbox ON containers (sandbox_id);
CREATE INDEX containers_by_state ON containers (state);

-- The name registrars: reserving a name is an INSERT, a conflict is the key.
CREATE TABLE names (
    kind        TEXT    NOT NULL CHECK (kind IN ('pod', 'container')),
    name        TEXT    NOT NULL,
    owner_id    TEXT    NOT NULL,
    reserved_at INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) STRICT, WITHOUT ROWID;

CREATE INDEX names_by_owner ON names (owner_id);

-- Labels of pods and containers, kept in step with the JSON columns.
CREATE TABLE labels (
    kind      TEXT NOT NULL CHECK (kind IN ('pod', 'container')),
    object_id TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (kind, object_id, key)
) STRICT, WITHOUT ROWID;

CREATE INDEX labels_by_key_value ON labels (kind, key, value);

CREATE TRIGGER sandbox_labels_insert AFTER INSERT ON sandboxes BEGIN
    INSERT INTO labels (kind, object_id, key, value)
    SELECT 'pod', new.id, j.key, j.value FROM json_each(new.labels) AS j;
END;
CREATE TRIGGER sandbox_labels_delete AFTER DELETE ON sandboxes BEGIN
    DELETE FROM labels WHERE kind = 'pod' AND object_id = old.id;
END;
CREATE TRIGGER container_labels_insert AFTER INSERT ON containers BEGIN
    INSERT INTO labels (kind, object_id, key, value)
    SELECT 'container', new.id, j.key, j.value FROM json_each(new.labels) AS j;
END;
CREATE TRIGGER container_labels_delete AFTER DELETE ON containers BEGIN
    DELETE FROM labels WHERE kind = 'container' AND object_id = old.id;
END;

-- Append-only journal of what happened on this node. Lifecycle transitions are
-- written by triggers so no code path can forget them; the reconciler adds its
-- repairs with type 'reconcile.<action>'.
CREATE TABLE events (
    seq       INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    kind      TEXT    NOT NULL CHECK (kind IN ('pod', 'container', 'name', 'node')),
    object_id TEXT    NOT NULL,
    type      TEXT    NOT NULL,
    detail    TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX events_by_object ON events (object_id);

CREATE TRIGGER sandbox_event_insert AFTER INSERT ON sandboxes BEGIN
    INSERT INTO events (at, kind, object_id, type, detail) VALUES (new.created_at, 'pod', new.id, new.state, new.name);
END;
CREATE TRIGGER sandbox_event_state AFTER UPDATE OF state ON sandboxes WHEN old.state <> new.state BEGIN
    INSERT INTO events (at, kind, object_id, type, detail) VALUES (new.updated_at, 'pod', new.id, new.state, old.state);
END;
CREATE TRIGGER sandbox_event_delete AFTER DELETE ON sandboxes BEGIN
    INSERT INTO events (at, kind, object_id, type, detail)
    VALUES (CAST(unixepoch('subsec') * 1000000000 AS INTEGER), 'pod', old.id, 'deleted', old.name);
END;
CREATE TRIGGER container_event_insert AFTER INSERT ON containers BEGIN
    INSERT INTO events (at, kind, object_id, type, detail) VALUES (new.created_at, 'container', new.id, new.state, new.name);
END;
CREATE TRIGGER container_event_state AFTER UPDATE OF state ON containers WHEN old.state <> new.state BEGIN
    INSERT INTO events (at, kind, object_id, type, detail) VALUES (new.updated_at, 'container', new.id, new.state, old.state);
END;
CREATE TRIGGER container_event_delete AFTER DELETE ON containers BEGIN
    INSERT INTO events (at, kind, object_id, type, detail)
    VALUES (CAST(unixepoch('subsec') * 1000000000 AS INTEGER), 'container', old.id, 'deleted', old.name);
END;

-- One row per reconciler pass.
CREATE TABLE reconcile_runs (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    trigger     TEXT    NOT NULL CHECK (trigger IN ('startup', 'periodic', 'admin')),
    dry_run     INTEGER NOT NULL DEFAULT 0 CHECK (dry_run IN (0, 1)),
    started_at  INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    actions     INTEGER NOT NULL,
    counts      TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(counts)), -- {"adopt": 1, ...}
    errors      TEXT    NOT NULL DEFAULT ''
) STRICT;
