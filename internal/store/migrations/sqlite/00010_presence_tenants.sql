-- A connection may serve several tenants (a doshii cloud socket, its vendor's locations): its
-- presence is one row per tenant, keyed by (conn_id, tenant). Rows are live connections only and
-- each replica writes its own again when a refresh finds them gone, so the table is recreated
-- rather than converted. Keep in step with ../postgres/00010_presence_tenants.sql.
-- +goose Up
DROP TABLE presence;
CREATE TABLE presence (
    conn_id TEXT    NOT NULL,
    tenant  TEXT    NOT NULL,
    replica TEXT    NOT NULL,
    since   INTEGER NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (conn_id, tenant)
) STRICT;
CREATE INDEX presence_tenant ON presence (tenant, seen_at);
CREATE INDEX presence_seen ON presence (seen_at);

-- +goose Down
DROP TABLE presence;
CREATE TABLE presence (
    conn_id TEXT    PRIMARY KEY,
    tenant  TEXT    NOT NULL,
    replica TEXT    NOT NULL,
    since   INTEGER NOT NULL,
    seen_at INTEGER NOT NULL
) STRICT;
CREATE INDEX presence_tenant ON presence (tenant, seen_at);
CREATE INDEX presence_seen ON presence (seen_at);
