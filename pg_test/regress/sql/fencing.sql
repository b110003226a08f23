-- Fencing tokens (issue 16): one session. Two-session behaviour is in
-- isolation/specs/fencing.spec, restarts and failover in the failover suite.
\set VERBOSITY terse
CREATE TEMP TABLE t (step text PRIMARY KEY, token bigint);

-- a token: timeline 1 in the high bits, a positive counter below
INSERT INTO t SELECT 'a', lock_named_fenced('fence-a');
SELECT token >> 47 AS timeline, (token & ((1::bigint << 47) - 1)) > 0 AS counter_positive FROM t WHERE step = 'a';
-- the token of this session's hold, and the check from this session
SELECT named_lock_token('fence-a') = token AS token_is_current FROM t WHERE step = 'a';
SELECT named_lock_check('fence-a', token) AS current, named_lock_check('fence-a', token - 1) AS older,
       named_lock_check('fence-other', token) AS other_name FROM t WHERE step = 'a';
SELECT named_lock_assert('fence-a', token) FROM t WHERE step = 'a';
-- re-entrant: the same token, not a new one; the hold count goes up
SELECT lock_named_fenced('fence-a') = token AS reentrant_same FROM t WHERE step = 'a';
SELECT try_lock_named_fenced('fence-a') = token AS try_reentrant_same FROM t WHERE step = 'a';
SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT unlock_named('fence-a'), unlock_named('fence-a');
SELECT named_lock_check('fence-a', token) AS still_held FROM t WHERE step = 'a';
SELECT unlock_named('fence-a');
-- released: the token no longer holds, the session has no token, assert raises 55P03
SELECT named_lock_check('fence-a', token) AS after_unlock FROM t WHERE step = 'a';
SELECT named_lock_token('fence-a') IS NULL AS no_token;
\set VERBOSITY sqlstate
SELECT named_lock_assert('fence-a', token) FROM t WHERE step = 'a';
\set VERBOSITY terse
-- the next grant's token is larger
INSERT INTO t SELECT 'b', try_lock_named_fenced('fence-a');
SELECT b.token > a.token AS larger FROM t a, t b WHERE a.step = 'a' AND b.step = 'b';
SELECT named_lock_check('fence-a', a.token) AS old_token, named_lock_check('fence-a', b.token) AS new_token
  FROM t a, t b WHERE a.step = 'a' AND b.step = 'b';
SELECT unlock_named('fence-a');
-- a plain grant after a fenced one: the old token fails, the session has no token
SELECT lock_named('fence-a');
SELECT named_lock_check('fence-a', token) AS after_plain_regrant, named_lock_token('fence-a') IS NULL AS no_token
  FROM t WHERE step = 'b';
-- a fenced call on a plain hold gives the hold a token
INSERT INTO t SELECT 'c', lock_named_fenced('fence-a');
SELECT c.token > b.token AS larger, named_lock_check('fence-a', c.token) AS current
  FROM t b, t c WHERE b.step = 'b' AND c.step = 'c';
-- a plain re-entrant call keeps the token
SELECT lock_named('fence-a');
SELECT named_lock_check('fence-a', token) AS kept FROM t WHERE step = 'c';
SELECT unlock_named('fence-a'), unlock_named('fence-a'), unlock_named('fence-a');
-- a shared hold has no token
SELECT lock_named_shared('fence-a');
SELECT named_lock_token('fence-a') IS NULL AS shared_no_token;
SELECT unlock_named_shared('fence-a');

-- transaction scope: the token holds until the transaction ends
BEGIN;
INSERT INTO t SELECT 'x', xact_lock_named_fenced('fence-x');
SELECT named_lock_check('fence-x', token), named_lock_token('fence-x') = token FROM t WHERE step = 'x';
SELECT try_xact_lock_named_fenced('fence-x') = token AS reentrant_same FROM t WHERE step = 'x';
SELECT xact_lock_named_fenced('fence-x', '1s') = token AS timed_reentrant_same FROM t WHERE step = 'x';
COMMIT;
SELECT named_lock_check('fence-x', token) AS after_commit FROM t WHERE step = 'x';
BEGIN;
INSERT INTO t SELECT 'y', xact_lock_named_fenced('fence-x', '1s');
ROLLBACK;
SELECT count(*) AS rolled_back_rows FROM t WHERE step = 'y';
-- a session hold and a transaction hold of one name share the grant's token
INSERT INTO t SELECT 's', lock_named_fenced('fence-s', '0');
BEGIN;
SELECT xact_lock_named_fenced('fence-s') = token AS xact_on_session_same FROM t WHERE step = 's';
COMMIT;
SELECT named_lock_check('fence-s', token) AS session_hold_kept FROM t WHERE step = 's';
SELECT unlock_named('fence-s');

-- PREPARE TRANSACTION: the prepared transaction holds the lock under the token
CREATE TABLE fence_prepared (token bigint);
BEGIN;
INSERT INTO fence_prepared SELECT xact_lock_named_fenced('fence-p');
PREPARE TRANSACTION 'fence-p';
-- its token is not visible until COMMIT PREPARED, but it is the next counter value
-- after fence-s's (one counter, this session the only one minting here)
SELECT named_lock_check('fence-p', token + 1) AS prepared_holds,
       named_lock_check('fence-p', token + 2) AS other_token,
       named_lock_token('fence-p') IS NULL AS not_this_session,
       try_lock_named_fenced('fence-p') IS NULL AS busy
  FROM t WHERE step = 's';
COMMIT PREPARED 'fence-p';
SELECT p.token = s.token + 1 AS was_next, named_lock_check('fence-p', p.token) AS after_commit_prepared
  FROM fence_prepared p, t s WHERE s.step = 's';
DROP TABLE fence_prepared;
SELECT named_lock_check('fence-p', 1) AS unknown_token;

-- NULL and bad arguments
SELECT named_lock_check(NULL, 1);
SELECT named_lock_check('fence-a', NULL);
SELECT named_lock_assert('fence-a', NULL);
SELECT named_lock_token(NULL);
SELECT lock_named_fenced(NULL);
SELECT lock_named_fenced('fence-a', NULL);
SELECT lock_named_fenced('fence-a', '-1s');
SELECT try_lock_named_fenced('');
-- never a lock left behind
SELECT count(*) AS locks_left FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
-- the high-water mark file is in the data directory
SELECT count(*) FROM pg_ls_dir('.') f WHERE f = 'pg_named_locks.fence';
