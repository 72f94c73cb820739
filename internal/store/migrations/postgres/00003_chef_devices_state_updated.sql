-- Pending chef devices by state and time: the pairing caps count the fresh pending requests
-- (updated_at after now − approval window), the console lists the most recent ones, and the
-- periodic cleanup deletes the stale ones (updated_at before now − chef.pending_retention). With
-- this index each of those reads only the rows it needs, however many others the table holds.
-- It replaces the state-only index (its leading column serves the same lookups).
-- +goose Up
CREATE INDEX chef_devices_state_updated ON chef_devices (state, updated_at);
DROP INDEX chef_devices_state;

-- +goose Down
CREATE INDEX chef_devices_state ON chef_devices (state);
DROP INDEX chef_devices_state_updated;
