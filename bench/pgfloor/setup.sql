-- Tables shaped like the ones posgate writes on its hot paths (bench/pgfloor/floor.sh setup).
DROP TABLE IF EXISTS pb_tok, pb_new, pb_users, pb_single, pb_rev, pb_counters, pb_audit;
CREATE TABLE pb_tok (id int PRIMARY KEY, family_id text NOT NULL, rotated_at bigint);
INSERT INTO pb_tok SELECT g, 'rf_' || g, 0 FROM generate_series(1, 100000) g;
CREATE TABLE pb_new (hash bytea PRIMARY KEY, family_id text NOT NULL, created_at bigint NOT NULL, idle_expires_at bigint NOT NULL,
  rotated_at bigint, successor_hash bytea, successor_sealed bytea);
CREATE TABLE pb_users (id text PRIMARY KEY, disabled bool NOT NULL, updated_at bigint NOT NULL);
INSERT INTO pb_users VALUES ('us_1', false, 0);
CREATE TABLE pb_single (name text PRIMARY KEY, used_at bigint NOT NULL, expires_at bigint NOT NULL);
CREATE TABLE pb_rev (kind text, subject text, revoked_at bigint NOT NULL, expires_at bigint NOT NULL, reason text NOT NULL, PRIMARY KEY (kind, subject));
VACUUM ANALYZE;
