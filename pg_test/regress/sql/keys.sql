--
-- Name -> key derivation (DESIGN.md section 2, the compatibility contract).
--
-- named_lock_key(s)   = first 8 bytes of md5(s), signed big-endian bigint
-- named_lock_key32(s) = first 4 bytes of md5(s), signed big-endian integer
--
-- The database is UTF8, so md5() in SQL hashes the same bytes a UTF-8 client hashes.
SELECT getdatabaseencoding();

-- Known values, computed independently with Python:
--   int.from_bytes(hashlib.md5(s.encode()).digest()[:8], "big", signed=True)
--   int.from_bytes(hashlib.md5(s.encode()).digest()[:4], "big", signed=True)
-- md5('a')       = 0cc175b9c0f1b6a8 31c399e269772661
-- md5('')        = d41d8cd98f00b204 e9800998ecf8427e
-- md5('account') = e268443e43d93dab 7ebef303bbe9642f
-- md5('x')       = 9dd4e461268c8034 f5c8564e155c67a6
SELECT s, named_lock_key(s), named_lock_key32(s)
FROM (VALUES ('a'), (''), ('account'), ('x'), ('daily-report-job'),
             ('Ünïcödé ✓ 日本語 🚀')) AS v(s)
ORDER BY s;

SELECT named_lock_key('a') = 919145239626757800 AS a_key_ok,
       named_lock_key('a') = x'0cc175b9c0f1b6a8'::bigint AS a_key_hex_ok,
       named_lock_key32('a') = 214005177 AS a_key32_ok,
       named_lock_key('') = -3162216497309240828 AS empty_key_ok,
       named_lock_key32('') = -736260903 AS empty_key32_ok,
       named_lock_key32('account') = -496483266 AS account_key32_ok,
       named_lock_key('Ünïcödé ✓ 日本語 🚀') = -2795828788290708549 AS unicode_key_ok;

-- The documented SQL idiom, over texts of every awkward kind.
CREATE TEMP TABLE key_cases (label text PRIMARY KEY, s text NOT NULL);
INSERT INTO key_cases VALUES
    ('ascii',                 'daily-report-job'),
    ('empty',                 ''),
    ('single space',          ' '),
    ('inner spaces',          '  leading, inner  and trailing  '),
    ('single quote',          'it''s'),
    ('double quotes',         '"quoted"'),
    ('backslashes',           E'back\\slash \\\\ C:\\temp\\new'),
    ('standard-string bslash','C:\temp\new'),
    ('control chars',         E'line1\nline2\tend\r'),
    ('latin accents',         'Ünïcödé'),
    ('cjk',                   '日本語のロック'),
    ('emoji (4-byte utf8)',   '🚀🔒'),
    ('rtl',                   'עברית RTL'),
    ('combining e+U+0301',    E'e\u0301'),
    ('precomposed U+00E9',    E'\u00e9'),
    ('upper case',            'ACCOUNT'),
    ('lower case',            'account'),
    ('digits',                '42'),
    ('sql-ish',               'x''; DROP TABLE t; --'),
    ('long ascii 100000',     repeat('x', 100000)),
    ('long multibyte',        repeat('ü-日🚀 ', 100000)),
    ('long 1MB',              repeat('0123456789abcdef', 65536));

SELECT label,
       octet_length(s) AS bytes,
       named_lock_key(s) = ('x' || substr(md5(s), 1, 16))::bit(64)::bigint AS key_ok,
       named_lock_key32(s) = ('x' || substr(md5(s), 1, 8))::bit(32)::int AS key32_ok,
       -- the 32-bit key is the high half of the 64-bit key
       named_lock_key32(s) = (named_lock_key(s) >> 32)::int AS key32_is_high_half,
       -- printing the key in hex gives back the md5 prefix
       lpad(to_hex(named_lock_key(s)), 16, '0') = substr(md5(s), 1, 16) AS hex_ok
FROM key_cases
ORDER BY label;

-- Many generated texts (code points from space up to U+D6F7, below the surrogates),
-- of lengths 1..64 characters.
SELECT count(*) AS texts,
       count(*) FILTER (WHERE named_lock_key(s) <> ('x' || substr(md5(s), 1, 16))::bit(64)::bigint) AS key_mismatches,
       count(*) FILTER (WHERE named_lock_key32(s) <> ('x' || substr(md5(s), 1, 8))::bit(32)::int) AS key32_mismatches,
       count(DISTINCT s) = count(*) AS texts_distinct,
       count(DISTINCT named_lock_key(s)) = count(*) AS keys_distinct
FROM (SELECT i, string_agg(chr(32 + ((i * 7919 + j * 104729) % 55000)), '' ORDER BY j) AS s
      FROM generate_series(1, 5000) AS i,
           generate_series(0, i % 64) AS j
      GROUP BY i) AS t;

-- No normalisation of any kind: the bytes are hashed as stored.
SELECT named_lock_key(E'e\u0301') <> named_lock_key(E'\u00e9') AS nfc_nfd_differ,
       named_lock_key('account') <> named_lock_key('ACCOUNT') AS case_matters,
       named_lock_key('job') <> named_lock_key('job ') AS trailing_space_matters,
       named_lock_key('job') <> named_lock_key(' job') AS leading_space_matters;

-- The key of a character string does not depend on its SQL type.
SELECT named_lock_key('job'::varchar) = named_lock_key('job'::text) AS varchar_ok,
       named_lock_key('job'::name) = named_lock_key('job') AS name_ok,
       named_lock_key('job    '::char(7)) = named_lock_key('job') AS bpchar_strips_padding;

-- Deterministic within and across calls (immutable): same key every time.
SELECT count(DISTINCT named_lock_key('daily-report-job')) AS distinct_keys,
       count(DISTINCT named_lock_key32('daily-report-job')) AS distinct_keys32
FROM generate_series(1, 1000);

-- Keys are signed: both signs occur (printed as signed integers, like the Python idiom).
SELECT min(named_lock_key(i::text)) < 0 AS some_negative,
       max(named_lock_key(i::text)) > 0 AS some_positive,
       min(named_lock_key32(i::text)) < 0 AS some_negative32,
       max(named_lock_key32(i::text)) > 0 AS some_positive32
FROM generate_series(1, 1000) AS i;

-- Hashing a name takes no lock.
SELECT named_lock_key('no-lock'), named_lock_key32('no-lock') IS NOT NULL AS computed;
SELECT count(*) AS advisory_locks_held
FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
