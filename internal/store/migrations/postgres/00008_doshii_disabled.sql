-- A doshii vendor or location can be disabled by the admin API: its credentials are refused and
-- its sockets closed. Locations are listed per vendor (admin API, console, a cloud POS's tenants).
-- +goose Up
ALTER TABLE doshii_vendors ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE doshii_locations ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX doshii_locations_vendor ON doshii_locations (vendor_id, created_at);

-- +goose Down
DROP INDEX doshii_locations_vendor;
ALTER TABLE doshii_locations DROP COLUMN disabled;
ALTER TABLE doshii_vendors DROP COLUMN disabled;
