-- Who is blocking whom on advisory locks, by lock name (pg_named_locks).
--
--   psql -X -f who_blocks_whom.sql                  once
--   \i who_blocks_whom.sql   then   \watch 2        in psql: refresh every 2 seconds
--
-- One row per (waiter, blocker). A blocker either holds the lock ("holds exclusive") or
-- waits ahead of the waiter in the queue for it ("queued ahead, wants exclusive"):
-- pg_blocking_pids reports both, and the first kind is the one to look at. Locks taken
-- with the built-in functions on a key nobody registered show as "key <n>".
-- Read-only and a single statement, so it is safe to \watch; other roles' names and
-- queries need pg_read_all_stats (pg_monitor), as in pg_stat_activity.
WITH l AS MATERIALIZED (SELECT * FROM advisory_locks_v)
SELECT w.pid                                                        AS waiter_pid,
       coalesce(w.lock_name,
                'key ' || coalesce(w.lock_key::text, w.key1 || ',' || w.key2)) AS lock_name,
       w.mode                                                       AS wants,
       date_trunc('second', clock_timestamp() - w.waiting_since)   AS waiting_for,
       w.application_name                                           AS waiter_app,
       bp.pid                                                       AS blocker_pid,
       bl.has                                                       AS blocker_has,
       b.application_name                                           AS blocker_app,
       b.state                                                      AS blocker_state,
       date_trunc('second', b.query_start)                          AS blocker_query_start,
       date_trunc('second', clock_timestamp() - b.state_change)    AS blocker_in_state_for,
       left(regexp_replace(b.query, '\s+', ' ', 'g'), 60)           AS blocker_query
  FROM l w
 CROSS JOIN LATERAL unnest(w.blocked_by) AS bp(pid)
  LEFT JOIN pg_stat_activity b ON b.pid = bp.pid
  LEFT JOIN LATERAL (
        SELECT string_agg(CASE WHEN o.granted THEN 'holds ' ELSE 'queued ahead, wants ' END || o.mode,
                          ', ' ORDER BY o.granted DESC) AS has
          FROM l o
         WHERE o.pid = bp.pid
           AND o.database IS NOT DISTINCT FROM w.database
           AND o.key_kind = w.key_kind
           AND o.lock_key IS NOT DISTINCT FROM w.lock_key
           AND o.key1 IS NOT DISTINCT FROM w.key1
           AND o.key2 IS NOT DISTINCT FROM w.key2) bl ON true
 WHERE NOT w.granted
 ORDER BY w.waiting_since NULLS LAST, w.pid, bl.has NULLS LAST, bp.pid;
