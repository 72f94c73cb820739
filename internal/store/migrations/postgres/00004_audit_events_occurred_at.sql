-- Audit events by time: the periodic cleanup deletes those older than server.audit_retention
-- (oldest first, in batches); with this index it reads only the rows it deletes.
-- +goose Up
CREATE INDEX audit_events_occurred_at ON audit_events (occurred_at);

-- +goose Down
DROP INDEX audit_events_occurred_at;
