-- chimpy refresh rotation: the token and the user read, then the rotation (mark, successor) as one pipeline: one implicit transaction.
\set k random(1, 100000)
SELECT t.family_id, t.rotated_at FROM pb_tok t WHERE t.id = :k;
SELECT disabled, updated_at FROM pb_users WHERE id = 'us_1';
\startpipeline
UPDATE pb_tok SET rotated_at = rotated_at + 1 WHERE id = :k RETURNING family_id;
INSERT INTO pb_new (hash, family_id, created_at, idle_expires_at) VALUES (decode(md5(random()::text), 'hex'), 'rf', 1, 2);
\endpipeline
