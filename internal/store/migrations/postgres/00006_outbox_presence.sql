-- Delivery queues for websocket peers (the outbox) and which replica holds which live socket
-- (presence). Keep in step with ../sqlite/00006_outbox_presence.sql.
--
-- outbox: one row per message, unique by (queue, id); seq is assigned on insert and orders a
-- queue. A message is open while its state is queued or sent; lease_owner/lease_until name the
-- delivery that claimed it last ('' / NULL when none). done_at is when it became done or expired.
-- The partial indexes cover the open rows only, so finished rows waiting for cleanup cost the
-- delivery path nothing.
-- +goose Up
CREATE TABLE outbox (
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
CREATE INDEX outbox_open_queue ON outbox (queue, seq) WHERE state IN ('queued', 'sent');
CREATE INDEX outbox_open_owner ON outbox (lease_owner) WHERE state IN ('queued', 'sent');
CREATE INDEX outbox_open_expiry ON outbox (expires_at) WHERE state IN ('queued', 'sent');
CREATE INDEX outbox_finished ON outbox (done_at) WHERE state IN ('done', 'expired');

CREATE TABLE presence (
    conn_id TEXT    PRIMARY KEY,
    tenant  TEXT    NOT NULL,
    replica TEXT    NOT NULL,
    since   BIGINT  NOT NULL,
    seen_at BIGINT  NOT NULL
);
CREATE INDEX presence_tenant ON presence (tenant, seen_at);
CREATE INDEX presence_seen ON presence (seen_at);

-- +goose Down
DROP TABLE presence;
DROP TABLE outbox;
