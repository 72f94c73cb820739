-- A client's version changes with every change of the client or of its assertion keys, so a
-- replica holding a cached copy can make a write conditional on the copy still being current
-- (jackpot's jwt-bearer checks its client inside the single-use write). Keep in step with
-- ../postgres/00012_client_version.sql.
-- +goose Up
ALTER TABLE clients ADD COLUMN version INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE clients DROP COLUMN version;
