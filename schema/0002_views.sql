-- Read-only views for operators (crispctl sql). Their columns are a stable
-- interface documented in README.md: add columns, never rename or drop one.

CREATE VIEW pods AS
SELECT s.id,
       substr(s.id, 1, 13)                                   AS short_id,
       s.kube_namespace                                      AS namespace,
       s.kube_name                                           AS name,
       s.kube_uid                                            AS uid,
       s.attempt,
       s.state,
       s.handler,
       s.trust,
       s.trust_reason,
       s.privileged,
       s.ips,
       strftime('%Y-%m-%dT%H:%M:%fZ', s.created_at / 1e9, 'unixepoch') AS created,
       (SELECT count(*) FROM containers c WHERE c.sandbox_id = s.id) AS containers,
       s.labels,
       s.annotations
FROM sandboxes s;

CREATE VIEW containers_view AS
SELECT c.id,
       substr(c.id, 1, 13)                                   AS short_id,
       s.kube_namespace                                      AS namespace,
       s.kube_name                                           AS pod,
       c.sandbox_id                                          AS pod_id,
       c.kube_name                                           AS name,
       c.attempt,
       s.handler,
       c.image,
       c.image_ref,
       c.state,
       c.pid,
       c.exit_code,
       c.reason,
       strftime('%Y-%m-%dT%H:%M:%fZ', c.created_at / 1e9, 'unixepoch')  AS created,
       CASE WHEN c.started_at = 0 THEN NULL
            ELSE strftime('%Y-%m-%dT%H:%M:%fZ', c.started_at / 1e9, 'unixepoch') END AS started,
       CASE WHEN c.finished_at = 0 THEN NULL
            ELSE strftime('%Y-%m-%dT%H:%M:%fZ', c.finished_at / 1e9, 'unixepoch') END AS finished,
       c.log_path,
       c.labels
FROM containers c
JOIN sandboxes s ON s.id = c.sandbox_id;

CREATE VIEW recent_events AS
SELECT seq,
       strftime('%Y-%m-%dT%H:%M:%fZ', at / 1e9, 'unixepoch') AS at,
       kind,
       substr(object_id, 1, 13)                                AS object,
       type,
       detail
FROM events
ORDER BY seq DESC
LIMIT 200;

CREATE VIEW reconcile_history AS
SELECT id,
       trigger,
       dry_run,
       strftime('%Y-%m-%dT%H:%M:%fZ', started_at / 1e9, 'unixepoch') AS started,
       round(duration_ns / 1e6, 3)                                    AS duration_ms,
       actions,
       counts,
       errors
FROM reconcile_runs
ORDER BY id DESC;
