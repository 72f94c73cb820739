-- chimpy refresh after the fourth pass (store.UseRefreshToken), on posgate's schema: one
-- statement reads, checks and rotates. Run with -D cur=0.
\set nxt :cur + 1
WITH cur AS (SELECT f.id, f.client_id, f.user_id, f.audience, f.scope, f.created_at, f.absolute_expires_at, f.revoked_at, f.revoke_reason,
    t.hash, t.created_at, t.idle_expires_at, t.rotated_at, t.successor_hash, t.successor_sealed,
    CASE WHEN EXISTS (SELECT 1 FROM users u WHERE u.id = f.user_id AND NOT u.disabled AND u.updated_at <= f.created_at) THEN 1 ELSE 0 END
    FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id WHERE t.hash = sha256((:client_id || ':' || :cur)::bytea)),
  mark AS (UPDATE refresh_tokens AS t SET rotated_at = 2, successor_hash = sha256((:client_id || ':' || :nxt)::bytea), successor_sealed = NULL
    FROM refresh_families f WHERE t.hash = sha256((:client_id || ':' || :cur)::bytea) AND t.rotated_at IS NULL AND t.idle_expires_at > 2
    AND f.id = t.family_id AND f.client_id = 'cl_1' AND f.revoked_at IS NULL AND f.absolute_expires_at > 2 AND ('' = '' OR f.audience = '')
    AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(CAST(CAST('["jackpot"]' AS text) AS jsonb)) AS j(v) WHERE j.v = f.audience)
    AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(CAST(CAST('[]' AS text) AS jsonb)) AS j(v) WHERE j.v = '' OR strpos(j.v, ' ') > 0
      OR strpos(' ' || f.scope || ' ', ' ' || j.v || ' ') = 0)
    AND EXISTS (SELECT 1 FROM users u WHERE u.id = f.user_id AND NOT u.disabled AND u.updated_at <= f.created_at)
    RETURNING t.family_id, LEAST(4000000000000, f.absolute_expires_at) AS idle),
  ins AS (INSERT INTO refresh_tokens (hash, family_id, created_at, idle_expires_at)
    SELECT sha256((:client_id || ':' || :nxt)::bytea), family_id, 2, idle FROM mark RETURNING 1)
SELECT cur.*, (SELECT count(*) FROM ins) FROM cur;
\set cur :nxt
