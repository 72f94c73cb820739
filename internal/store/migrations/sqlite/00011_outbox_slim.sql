-- Fewer pages written per outbox write. Keep in step with ../postgres/00011_outbox_slim.sql.
--
-- seq loses AUTOINCREMENT: each insert no longer writes the sqlite_sequence row. Without it SQLite
-- gives a new row the largest rowid in the table plus one (a random unused one only once the
-- largest possible rowid, 2^63 - 1, is taken: never, at any rate this table sees). So a new
-- message's seq is above the seq of every row still in the table, and in particular of every open
-- message: the order of a queue (by seq, over its open messages) is the order of the inserts, as
-- before. What AUTOINCREMENT added is that a seq is never used twice: a new message may now get
-- the seq of a deleted row that had the largest one (a finished message cleaned up, the messages
-- of a deleted location). Nothing refers to the seq of a deleted row — seq orders the open
-- messages of a queue and is never shown — so the reuse changes nothing. (The storetest case
-- OutboxSeqAfterCleanup enqueues after such a cleanup.)
--
-- outbox_open_owner goes: the lease owner of a delivery is unique to one queue, so releases and
-- renewals name the queue and find its open messages through outbox_open_queue, and a claim, a
-- release or a renewal, which change lease_owner, no longer rewrite an entry of that index.
--
-- The table is rebuilt with its rows copied in seq order and numbered afresh from 1: the order
-- of every queue is kept, and no seq of a deleted row can be above a copied one.
-- +goose Up
CREATE TABLE outbox_new (
    seq         INTEGER PRIMARY KEY,
    queue       TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    body_hash   BLOB    NOT NULL,
    payload     BLOB    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('queued', 'sent', 'done', 'expired')),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL,
    lease_owner TEXT    NOT NULL,
    lease_until INTEGER,
    sent_at     INTEGER,
    done_at     INTEGER,
    answer      BLOB,
    UNIQUE (queue, id)
) STRICT;
INSERT INTO outbox_new (queue, id, body_hash, payload, state, created_at, expires_at, attempts,
    lease_owner, lease_until, sent_at, done_at, answer)
SELECT queue, id, body_hash, payload, state, created_at, expires_at, attempts,
    lease_owner, lease_until, sent_at, done_at, answer FROM outbox ORDER BY seq;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_open_queue ON outbox (queue, seq) WHERE state IN ('queued', 'sent');
CREATE INDEX outbox_open_expiry ON outbox (expires_at) WHERE state IN ('queued', 'sent');
CREATE INDEX outbox_finished ON outbox (done_at) WHERE state IN ('done', 'expired');

-- +goose Down
CREATE TABLE outbox_old (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    queue       TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    body_hash   BLOB    NOT NULL,
    payload     BLOB    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('queued', 'sent', 'done', 'expired')),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL,
    lease_owner TEXT    NOT NULL,
    lease_until INTEGER,
    sent_at     INTEGER,
    done_at     INTEGER,
    answer      BLOB,
    UNIQUE (queue, id)
) STRICT;
INSERT INTO outbox_old (queue, id, body_hash, payload, state, created_at, expires_at, attempts,
    lease_owner, lease_until, sent_at, done_at, answer)
SELECT queue, id, body_hash, payload, state, created_at, expires_at, attempts,
    lease_owner, lease_until, sent_at, done_at, answer FROM outbox ORDER BY seq;
DROP TABLE outbox;
ALTER TABLE outbox_old RENAME TO outbox;
CREATE INDEX outbox_open_queue ON outbox (queue, seq) WHERE state IN ('queued', 'sent');
CREATE INDEX outbox_open_owner ON outbox (lease_owner) WHERE state IN ('queued', 'sent');
CREATE INDEX outbox_open_expiry ON outbox (expires_at) WHERE state IN ('queued', 'sent');
CREATE INDEX outbox_finished ON outbox (done_at) WHERE state IN ('done', 'expired');
