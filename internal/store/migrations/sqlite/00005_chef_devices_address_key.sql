-- The part of a pending device's address the per-address pairing cap counts by (auth.AddrKey: an
-- IPv4 address itself, an IPv6 address its /64), so one host cannot pass the cap by using the
-- 2^64 addresses of its /64. Existing rows count by their full address until asked again.
-- +goose Up
ALTER TABLE chef_devices ADD COLUMN address_key TEXT NOT NULL DEFAULT '';
UPDATE chef_devices SET address_key = address;

-- +goose Down
ALTER TABLE chef_devices DROP COLUMN address_key;
