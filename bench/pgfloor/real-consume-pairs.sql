-- consume after the fourth pass, on posgate's schema, two consumers combined: one claim
-- statement of two rows, one revocation statement of two rows. Each run is two requests.
\set r random(1, 1000000000)
INSERT INTO single_use (name, used_at, expires_at) VALUES ('consume-a' || :r::text || md5(random()::text), 1, 2), ('consume-b' || :r::text || md5(random()::text), 1, 2)
  ON CONFLICT (name) DO UPDATE SET used_at = excluded.used_at, expires_at = excluded.expires_at WHERE single_use.expires_at <= excluded.used_at RETURNING name;
INSERT INTO revocations (kind, subject, revoked_at, expires_at, reason) VALUES ('jti', 'a' || :r::text || md5(random()::text), 1, 2, 'consumed'),
  ('jti', 'b' || :r::text || md5(random()::text), 1, 2, 'consumed') ON CONFLICT (kind, subject) DO NOTHING;
