-- Orderpay outlets (a POS that connects out to posgate's websocket) and the single-use tickets
-- (AccessTokens) that open that websocket. A ticket is consumed by one conditional update of
-- used_at, so replicas racing on one ticket cannot both open a socket with it.
-- +goose Up
CREATE TABLE orderpay_outlets (
    id                 TEXT    PRIMARY KEY,
    provider_outlet_id TEXT    NOT NULL UNIQUE,
    pos_remote_id      TEXT    NOT NULL,
    provider_id        INTEGER NOT NULL,
    provider_name      TEXT    NOT NULL,
    auth_secret_hash   TEXT    NOT NULL,
    disabled           INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
) STRICT;

CREATE TABLE orderpay_tickets (
    hash       BLOB    PRIMARY KEY,
    outlet_id  TEXT    NOT NULL REFERENCES orderpay_outlets (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;

CREATE INDEX orderpay_tickets_expires ON orderpay_tickets (expires_at);

-- +goose Down
DROP TABLE orderpay_tickets;
DROP TABLE orderpay_outlets;
