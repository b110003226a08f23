-- 5. this extension, try; unlock only when taken
SELECT try_lock_named(:name) AS got \gset
\if :got
SELECT unlock_named(:name);
\endif
