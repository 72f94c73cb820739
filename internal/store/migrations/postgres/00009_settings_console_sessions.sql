-- Facts every replica of a deployment must agree on (settings: the token issuer), and the web
-- console's sign-in sessions, kept here so any replica can serve a person and a restart does not
-- sign anyone out. Keep in step with ../sqlite/00009_settings_console_sessions.sql.
--
-- console_sessions: hash is the SHA-256 of the cookie value (the value itself is never stored);
-- binding is a keyed fingerprint of the credential the person signed in with, so a changed
-- credential ends its sessions. A session is live while the time is before both idle_expires_at
-- and expires_at (absolute).
-- +goose Up
CREATE TABLE settings (
    name       TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL
);

CREATE TABLE console_sessions (
    hash            BYTEA   PRIMARY KEY,
    binding         BYTEA   NOT NULL,
    created_at      BIGINT  NOT NULL,
    seen_at         BIGINT  NOT NULL,
    idle_expires_at BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    flash           TEXT    NOT NULL
);
CREATE INDEX console_sessions_idle ON console_sessions (idle_expires_at);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- +goose Down
DROP TABLE console_sessions;
DROP TABLE settings;
