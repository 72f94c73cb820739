-- consume route: the single-use claim, the jti revocation and its NOTIFY, each its own transaction.
\set r random(1, 1000000000)
INSERT INTO pb_single (name, used_at, expires_at) VALUES ('consume:' || :r || md5(random()::text), 1, 2)
  ON CONFLICT (name) DO UPDATE SET used_at = excluded.used_at, expires_at = excluded.expires_at WHERE pb_single.expires_at <= excluded.used_at;
INSERT INTO pb_rev (kind, subject, revoked_at, expires_at, reason) VALUES ('jti', :r || md5(random()::text), 1, 2, 'consumed') ON CONFLICT (kind, subject) DO NOTHING;
SELECT pg_notify('pb_events', 'x' || :r);
