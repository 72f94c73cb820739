-- Fewer index entries written per outbox write. Keep in step with ../sqlite/00011_outbox_slim.sql,
-- which also drops AUTOINCREMENT (seq here is an identity column, which writes no extra row).
--
-- outbox_open_owner goes: the lease owner of a delivery is unique to one queue, so releases and
-- renewals name the queue and find its open messages through outbox_open_queue. An update that
-- changes only lease_owner and lease_until (a renewal) then touches no indexed column and can be
-- a heap-only update.
--
-- The table is rebuilt with its rows copied in seq order and numbered afresh from 1: the order
-- of every queue is kept, and no seq of a deleted row can be above a copied one. The rebuild keeps the two engines' migrations alike; the table holds
-- messages in flight and finished ones awaiting cleanup, so it is small.
-- +goose Up
CREATE TABLE outbox_new (
    seq         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue       TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    body_hash   BYTEA   NOT NULL,
    payload     BYTEA   NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('queued', 'sent', 'done', 'expired')),
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    attempts    BIGINT  NOT NULL,
    lease_owner TEXT    NOT NULL,
    lease_until BIGINT,
    sent_at     BIGINT,
    done_at     BIGINT,
    answer      BYTEA,
    UNIQUE (queue, id)
);
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
    seq         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue       TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    body_hash   BYTEA   NOT NULL,
    payload     BYTEA   NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('queued', 'sent', 'done', 'expired')),
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    attempts    BIGINT  NOT NULL,
    lease_owner TEXT    NOT NULL,
    lease_until BIGINT,
    sent_at     BIGINT,
    done_at     BIGINT,
    answer      BYTEA,
    UNIQUE (queue, id)
);
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
