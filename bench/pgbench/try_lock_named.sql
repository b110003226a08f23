-- 5. this extension, try; unlock only when taken
SELECT try_lock_named('bench-' || :id) AS got \gset
\if :got
SELECT unlock_named('bench-' || :id);
\endif
