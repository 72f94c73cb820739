-- Rows for the real-schema shapes (floor.sh schema): one client and user, and eight refresh
-- families, one per pgbench client, each with the first token of its chain (step 0).
INSERT INTO users (id, username, password_hash, disabled, created_at, updated_at) VALUES ('us_1', 'u1', 'x', false, 0, 0);
INSERT INTO clients (id, name, client_id_hash, client_id_hint, secret_hash, grant_types, scopes, audiences, api_key, disabled, created_at, updated_at)
  VALUES ('cl_1', 'c', sha256('apikey'::bytea), 'pg_ck_…', NULL, '["urn:ietf:params:oauth:grant-type:jwt-bearer"]', '[]', '[]', true, false, 0, 0);
INSERT INTO refresh_families (id, client_id, user_id, audience, scope, created_at, absolute_expires_at, revoke_reason)
  SELECT 'rf_' || g, 'cl_1', 'us_1', 'https://api.example', 'offline_access rentals', 1, 4000000000000, '' FROM generate_series(0, 7) g;
INSERT INTO refresh_tokens (hash, family_id, created_at, idle_expires_at)
  SELECT sha256((g || ':0')::bytea), 'rf_' || g, 1, 4000000000000 FROM generate_series(0, 7) g;
VACUUM ANALYZE;
-- A table of realistic size, so the planner reads tokens by their index.
INSERT INTO refresh_families (id, client_id, user_id, audience, scope, created_at, absolute_expires_at, revoke_reason)
  VALUES ('rf_old', 'cl_1', 'us_1', 'https://api.example', 'offline_access rentals', 1, 4000000000000, '');
INSERT INTO refresh_tokens (hash, family_id, created_at, idle_expires_at, rotated_at)
  SELECT sha256(('old:' || g)::bytea), 'rf_old', 1, 4000000000000, 2 FROM generate_series(1, 100000) g;
ANALYZE;
