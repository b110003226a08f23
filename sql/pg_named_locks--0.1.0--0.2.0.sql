-- pg_named_locks 0.1.0 -> 0.2.0: fencing tokens (issue 16).
-- Nine new functions; nothing of 0.1.0 changes. Not STRICT: a NULL argument raises 22004.

CREATE FUNCTION "lock_named_fenced"("name" TEXT) RETURNS bigint VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'lock_named_fenced_wrapper';
CREATE FUNCTION "lock_named_fenced"("name" TEXT, "timeout" INTERVAL) RETURNS bigint VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'lock_named_fenced_timeout_wrapper';
CREATE FUNCTION "try_lock_named_fenced"("name" TEXT) RETURNS bigint VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'try_lock_named_fenced_wrapper';
CREATE FUNCTION "xact_lock_named_fenced"("name" TEXT) RETURNS bigint VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'xact_lock_named_fenced_wrapper';
CREATE FUNCTION "xact_lock_named_fenced"("name" TEXT, "timeout" INTERVAL) RETURNS bigint VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'xact_lock_named_fenced_timeout_wrapper';
CREATE FUNCTION "try_xact_lock_named_fenced"("name" TEXT) RETURNS bigint VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'try_xact_lock_named_fenced_wrapper';
CREATE FUNCTION "named_lock_token"("name" TEXT) RETURNS bigint VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'named_lock_token_wrapper';
CREATE FUNCTION "named_lock_check"("name" TEXT, "token" BIGINT) RETURNS bool VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'named_lock_check_wrapper';
CREATE FUNCTION "named_lock_assert"("name" TEXT, "token" BIGINT) RETURNS void VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'named_lock_assert_wrapper';
