-- built-in try on a precomputed key (baseline for try_lock_named); unlock only when taken
SELECT pg_try_advisory_lock(:k) AS got \gset
\if :got
SELECT pg_advisory_unlock(:k);
\endif
