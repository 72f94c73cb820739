-- posgate schema, PostgreSQL flavour. Times are BIGINT milliseconds since the Unix epoch (UTC) on both
-- engines, so one SQL text compares them and the round trip is exact at ms precision; byte strings
-- are BYTEA (BLOB on SQLite); booleans are BOOLEAN (INTEGER 0/1 on SQLite). Keep this file and
-- ../sqlite/00001_init.sql in step: same tables, columns, constraints and indexes.

-- +goose Up
CREATE TABLE clients (
    id             TEXT    PRIMARY KEY,
    name           TEXT    NOT NULL,
    client_id_hash BYTEA    NOT NULL UNIQUE, -- hot path: GetClientByIDHash
    client_id_hint TEXT    NOT NULL,
    secret_hash    BYTEA,
    grant_types    TEXT    NOT NULL, -- JSON array of strings
    scopes         TEXT    NOT NULL, -- JSON array of strings
    audiences      TEXT    NOT NULL, -- JSON array of strings
    api_key        BOOLEAN NOT NULL,
    disabled       BOOLEAN NOT NULL,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);

CREATE TABLE client_assertion_keys (
    id         TEXT    PRIMARY KEY,
    client_id  TEXT    NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    pos        BIGINT  NOT NULL, -- insertion order within the client; newest is highest
    sealed     BYTEA    NOT NULL,
    created_at BIGINT  NOT NULL,
    not_after  BIGINT ,
    UNIQUE (client_id, pos)
);

CREATE TABLE users (
    id            TEXT    PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    disabled      BOOLEAN NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);

CREATE TABLE signing_keys (
    kid            TEXT    PRIMARY KEY,
    alg            TEXT    NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('next', 'active', 'retired')),
    private_sealed BYTEA    NOT NULL,
    public_der     BYTEA    NOT NULL,
    created_at     BIGINT  NOT NULL,
    activate_at    BIGINT ,
    retired_at     BIGINT ,
    expires_at     BIGINT 
);
-- At most one active key, whatever replicas do concurrently.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';

CREATE TABLE refresh_families (
    id                  TEXT    PRIMARY KEY,
    client_id           TEXT    NOT NULL,
    user_id             TEXT    NOT NULL,
    audience            TEXT    NOT NULL,
    scope               TEXT    NOT NULL,
    created_at          BIGINT  NOT NULL,
    absolute_expires_at BIGINT  NOT NULL,
    revoked_at          BIGINT ,
    revoke_reason       TEXT    NOT NULL
);
CREATE INDEX refresh_families_user ON refresh_families (user_id);
CREATE INDEX refresh_families_expiry ON refresh_families (absolute_expires_at);

CREATE TABLE refresh_tokens (
    hash             BYTEA    PRIMARY KEY,
    family_id        TEXT    NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    created_at       BIGINT  NOT NULL,
    idle_expires_at  BIGINT  NOT NULL,
    rotated_at       BIGINT ,
    successor_hash   BYTEA,
    successor_sealed BYTEA
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE revocations (
    kind       TEXT    NOT NULL CHECK (kind IN ('jti', 'sid')),
    subject    TEXT    NOT NULL,
    revoked_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    reason     TEXT    NOT NULL,
    PRIMARY KEY (kind, subject) -- hot path: IsRevoked
);
CREATE INDEX revocations_revoked_at ON revocations (revoked_at);
CREATE INDEX revocations_expiry ON revocations (expires_at);

CREATE TABLE single_use (
    name       TEXT    PRIMARY KEY, -- hot path: UseOnce
    used_at    BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX single_use_expiry ON single_use (expires_at);

CREATE TABLE doshii_vendors (
    id         TEXT    PRIMARY KEY,
    api_name   TEXT    NOT NULL UNIQUE,
    created_at BIGINT  NOT NULL
);

CREATE TABLE doshii_vendor_keys (
    id         TEXT    PRIMARY KEY,
    vendor_id  TEXT    NOT NULL REFERENCES doshii_vendors (id) ON DELETE CASCADE,
    pos        BIGINT  NOT NULL,
    sealed     BYTEA    NOT NULL,
    hash       BYTEA    NOT NULL,
    created_at BIGINT  NOT NULL,
    not_after  BIGINT ,
    UNIQUE (vendor_id, pos)
);

CREATE TABLE doshii_organisations (
    id         TEXT    PRIMARY KEY,
    vendor_id  TEXT    NOT NULL REFERENCES doshii_vendors (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    body       BYTEA,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    UNIQUE (vendor_id, name),
    UNIQUE (id, vendor_id) -- target of the locations' composite key
);

CREATE TABLE doshii_locations (
    id              TEXT    PRIMARY KEY,
    vendor_id       TEXT    NOT NULL,
    organisation_id TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    token_hash      BYTEA    NOT NULL UNIQUE, -- hot path: GetDoshiiLocationByTokenHash
    body            BYTEA,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    disconnected_at BIGINT ,
    UNIQUE (organisation_id, name),
    -- a location belongs to an organisation of the same vendor
    FOREIGN KEY (organisation_id, vendor_id) REFERENCES doshii_organisations (id, vendor_id) ON DELETE CASCADE
);

CREATE TABLE chef_devices (
    id          TEXT    PRIMARY KEY,
    device_key  TEXT    NOT NULL UNIQUE,
    label       TEXT    NOT NULL,
    address     TEXT    NOT NULL,
    user_agent  TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'approved', 'declined', 'revoked')),
    first_seen  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    decided_at  BIGINT ,
    decided_by  TEXT    NOT NULL,
    generation  BIGINT  NOT NULL
);
CREATE INDEX chef_devices_state ON chef_devices (state);

CREATE TABLE audit_events (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at BIGINT  NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    address     TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    detail      TEXT    NOT NULL
);

CREATE TABLE counters (
    name         TEXT    PRIMARY KEY,
    window_start BIGINT  NOT NULL,
    hits         BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL
);
CREATE INDEX counters_expiry ON counters (expires_at);

-- +goose Down
DROP TABLE counters;
DROP TABLE audit_events;
DROP TABLE chef_devices;
DROP TABLE doshii_locations;
DROP TABLE doshii_organisations;
DROP TABLE doshii_vendor_keys;
DROP TABLE doshii_vendors;
DROP TABLE single_use;
DROP TABLE revocations;
DROP TABLE refresh_tokens;
DROP TABLE refresh_families;
DROP TABLE signing_keys;
DROP TABLE users;
DROP TABLE client_assertion_keys;
DROP TABLE clients;
