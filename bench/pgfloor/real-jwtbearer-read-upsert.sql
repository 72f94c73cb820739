-- jackpot jwt-bearer before the fourth pass, on posgate's schema: the client read by API key
-- hash, then the notificationKey's single-use upsert.
SELECT c.id, c.name, c.client_id_hash, c.client_id_hint, c.secret_hash, c.grant_types, c.scopes, c.audiences, c.api_key, c.disabled,
  c.created_at, c.updated_at, k.id, k.sealed, k.created_at, k.not_after
  FROM clients c LEFT JOIN client_assertion_keys k ON k.client_id = c.id WHERE c.client_id_hash = sha256('apikey'::bytea) ORDER BY k.pos DESC;
INSERT INTO single_use (name, used_at, expires_at) VALUES ('jackpot-nk-cl_1-' || md5(random()::text), 1, 2)
  ON CONFLICT (name) DO UPDATE SET used_at = excluded.used_at, expires_at = excluded.expires_at WHERE single_use.expires_at <= excluded.used_at;
