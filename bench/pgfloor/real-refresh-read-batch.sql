-- chimpy refresh before the fourth pass, on posgate's schema: the token and family read, then the
-- rotation (mark with the user check, successor) as one pipeline. Run with -D cur=0.
\set nxt :cur + 1
SELECT f.id, f.client_id, f.user_id, f.audience, f.scope, f.created_at, f.absolute_expires_at, f.revoked_at, f.revoke_reason,
  t.hash, t.created_at, t.idle_expires_at, t.rotated_at, t.successor_hash, t.successor_sealed
  FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id WHERE t.hash = sha256((:client_id || ':' || :cur)::bytea);
\startpipeline
UPDATE refresh_tokens SET rotated_at = 2, successor_hash = sha256((:client_id || ':' || :nxt)::bytea), successor_sealed = NULL
  WHERE hash = sha256((:client_id || ':' || :cur)::bytea) AND rotated_at IS NULL
  AND EXISTS (SELECT 1 FROM refresh_families f WHERE f.id = refresh_tokens.family_id AND
    EXISTS (SELECT 1 FROM users u WHERE u.id = f.user_id AND NOT u.disabled AND u.updated_at <= f.created_at)) RETURNING family_id;
INSERT INTO refresh_tokens (hash, family_id, created_at, idle_expires_at, rotated_at, successor_hash, successor_sealed)
  SELECT sha256((:client_id || ':' || :nxt)::bytea), family_id, 2, 4000000000000, NULL, NULL, NULL FROM refresh_tokens
  WHERE hash = sha256((:client_id || ':' || :cur)::bytea) AND rotated_at = 2 AND successor_hash = sha256((:client_id || ':' || :nxt)::bytea);
\endpipeline
\set cur :nxt
