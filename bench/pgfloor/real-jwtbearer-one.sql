-- jackpot jwt-bearer after the fourth pass (store.UseOnceAsClient), on posgate's schema: the
-- client check and the single-use upsert in one statement.
WITH c AS (SELECT 1 FROM clients WHERE id = 'cl_1' AND version = 0 AND NOT disabled),
  k0 AS (INSERT INTO single_use (name, used_at, expires_at) SELECT 'jackpot-nk-cl_1-' || md5(random()::text), 1, 2 FROM c
    ON CONFLICT (name) DO UPDATE SET used_at = excluded.used_at, expires_at = excluded.expires_at
    WHERE single_use.expires_at <= excluded.used_at RETURNING 1)
SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM k0);
