-- Orderpay outlets (a POS that connects out to posgate's websocket) and the single-use tickets
-- (AccessTokens) that open that websocket. A ticket is consumed by one conditional update of
-- used_at, so replicas racing on one ticket cannot both open a socket with it.
-- +goose Up
CREATE TABLE orderpay_outlets (
    id                 TEXT    PRIMARY KEY,
    provider_outlet_id TEXT    NOT NULL UNIQUE,
    pos_remote_id      TEXT    NOT NULL,
    provider_id        BIGINT  NOT NULL,
    provider_name      TEXT    NOT NULL,
    auth_secret_hash   TEXT    NOT NULL,
    disabled           BOOLEAN NOT NULL,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL
);

CREATE TABLE orderpay_tickets (
    hash       BYTEA   PRIMARY KEY,
    outlet_id  TEXT    NOT NULL REFERENCES orderpay_outlets (id) ON DELETE CASCADE,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    used_at    BIGINT
);

CREATE INDEX orderpay_tickets_expires ON orderpay_tickets (expires_at);

-- +goose Down
DROP TABLE orderpay_tickets;
DROP TABLE orderpay_outlets;
