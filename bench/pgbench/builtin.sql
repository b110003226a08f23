-- 1. built-in on a precomputed key: the floor
SELECT pg_advisory_lock(:k);
SELECT pg_advisory_unlock(:k);
