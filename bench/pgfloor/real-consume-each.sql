-- consume before the fourth pass, on posgate's schema: a claim and a revocation, each its own
-- transaction (the NOTIFY, shared by concurrent consumers, is left out).
\set r random(1, 1000000000)
INSERT INTO single_use (name, used_at, expires_at) VALUES ('consume:' || :r::text || md5(random()::text), 1, 2)
  ON CONFLICT (name) DO UPDATE SET used_at = excluded.used_at, expires_at = excluded.expires_at WHERE single_use.expires_at <= excluded.used_at;
INSERT INTO revocations (kind, subject, revoked_at, expires_at, reason) VALUES ('jti', :r::text || md5(random()::text), 1, 2, 'consumed')
  ON CONFLICT (kind, subject) DO NOTHING;
