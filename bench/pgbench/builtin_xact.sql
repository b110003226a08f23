-- built-in transaction lock on a precomputed key (baseline for xact_lock_named):
-- one statement, autocommit: locked, then released at its commit
SELECT pg_advisory_xact_lock(:k);
