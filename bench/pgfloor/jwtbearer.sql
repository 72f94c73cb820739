-- jackpot jwt-bearer: the client read, then one single-use upsert.
SELECT disabled, updated_at FROM pb_users WHERE id = 'us_1';
INSERT INTO pb_single (name, used_at, expires_at) VALUES (md5(random()::text), 1, 2)
  ON CONFLICT (name) DO UPDATE SET used_at = excluded.used_at, expires_at = excluded.expires_at WHERE pb_single.expires_at <= excluded.used_at;
