-- Facts about the node that crispd keeps between runs, one row per key:
-- boot_id is the boot in which the reconciler last passed, so that a start
-- after a reboot is told from a restart of crispd.
CREATE TABLE node_state (
    key        TEXT    NOT NULL PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
