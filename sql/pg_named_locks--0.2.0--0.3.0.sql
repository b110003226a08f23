-- pg_named_locks 0.2.0 -> 0.3.0: liveness (issue 17): leased locks, "do I hold it?",
-- and idle holders and wait-queue positions in monitoring.
-- Six new C functions and named_lock_idle_holders; advisory_lock_status() gains two
-- output columns (queue_position, lease_expires_at) and advisory_locks_v three
-- (idle_for, queue_position, lease_expires_at): a function's result type cannot change
-- in place, so the view and its source are dropped and created again, with the view's
-- grant. Not STRICT: a NULL argument raises 22004.

CREATE FUNCTION "lock_named_lease"("name" TEXT, "lease" INTERVAL) RETURNS bool VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'lock_named_lease_wrapper';
CREATE FUNCTION "lock_named_lease"("name" TEXT, "lease" INTERVAL, "timeout" INTERVAL) RETURNS bool VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'lock_named_lease_timeout_wrapper';
CREATE FUNCTION "named_lock_renew"("name" TEXT) RETURNS bool VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'named_lock_renew_wrapper';
CREATE FUNCTION "named_lock_held"("name" TEXT) RETURNS bool VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'named_lock_held_wrapper';
CREATE FUNCTION "named_lock_held_shared"("name" TEXT) RETURNS bool VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'named_lock_held_shared_wrapper';
CREATE FUNCTION "named_lock_hold_count"("name" TEXT) RETURNS INT VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'named_lock_hold_count_wrapper';

DROP VIEW @extschema@.advisory_locks_v;
DROP FUNCTION @extschema@.advisory_lock_status();

CREATE FUNCTION advisory_lock_status()
RETURNS TABLE (dbid oid, pid integer, lock_name text, key_kind text, lock_key bigint,
               key1 integer, key2 integer, mode text, granted boolean,
               waiting_since timestamptz, held_since timestamptz,
               queue_position integer, lease_expires_at timestamptz)
STRICT VOLATILE PARALLEL RESTRICTED ROWS 10000
LANGUAGE c AS 'MODULE_PATHNAME', 'advisory_lock_status_wrapper';

CREATE VIEW @extschema@.advisory_locks_v AS
SELECT d.datname AS database, l.pid, l.lock_name, l.key_kind, l.lock_key, l.key1, l.key2,
       l.mode, l.granted, l.waiting_since, l.held_since,
       CASE WHEN NOT l.granted AND l.pid IS NOT NULL
            THEN pg_catalog.pg_blocking_pids(l.pid) END AS blocked_by,
       a.usename, a.application_name, a.client_addr, a.state AS backend_state, a.state_change,
       CASE WHEN l.granted AND a.state OPERATOR(pg_catalog.=) ANY
                 (ARRAY['idle', 'idle in transaction', 'idle in transaction (aborted)'])
            THEN GREATEST(pg_catalog.statement_timestamp() OPERATOR(pg_catalog.-) a.state_change,
                          interval '0') END AS idle_for,
       l.queue_position, l.lease_expires_at
  FROM @extschema@.advisory_lock_status() l
  LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) l.dbid
  LEFT JOIN (SELECT DISTINCT ON (s.pid) s.pid, s.usename, s.application_name, s.client_addr,
                    s.state, s.state_change
               FROM pg_catalog.pg_stat_activity s) a ON a.pid OPERATOR(pg_catalog.=) l.pid;

GRANT SELECT ON @extschema@.advisory_locks_v TO PUBLIC;

CREATE FUNCTION @extschema@.named_lock_idle_holders(min_idle interval DEFAULT '5 minutes')
RETURNS TABLE (pid integer, lock_name text, mode text, idle_for interval, backend_state text,
               waiters integer, application_name text, client_addr inet, database name,
               usename name, key_kind text, lock_key bigint, key1 integer, key2 integer,
               held_since timestamptz, lease_expires_at timestamptz)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE sql
AS $$
SELECT h.pid, h.lock_name, h.mode, h.idle_for, h.backend_state, h.waiters::integer,
       h.application_name, h.client_addr, h.database, h.usename, h.key_kind, h.lock_key,
       h.key1, h.key2, h.held_since, h.lease_expires_at
  FROM (SELECT v.*,
               pg_catalog.count(*) FILTER (WHERE NOT v.granted)
                 OVER (PARTITION BY v.database, v.key_kind, v.lock_key, v.key1, v.key2) AS waiters
          FROM @extschema@.advisory_locks_v v) h
 WHERE h.granted AND h.idle_for OPERATOR(pg_catalog.>=) min_idle
 ORDER BY h.idle_for DESC, h.pid
$$;
