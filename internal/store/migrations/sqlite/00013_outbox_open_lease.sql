-- The open messages of a queue by lease owner and lease end. Keep in step with
-- ../postgres/00013_outbox_open_lease.sql.
--
-- A hand-off (an insert that stores a message already taken by the delivery of the queue's
-- socket) first asks whether the queue has an open message that delivery does not hold on a live
-- lease. Through outbox_open_queue that question walked every open message of the queue from its
-- lowest seq: the ones the delivery holds (events written and awaiting their done marks, requests
-- awaiting their answers) and, on PostgreSQL, the index entries each done mark leaves dead at the
-- front of the queue until a vacuum. Through this index it is three searches that each stop at
-- their first entry: another owner below and above the delivery's in (queue, lease_owner) order,
-- and the delivery's own messages whose lease ended. The delivery's live leases, and the entries
-- its done marks leave behind while their leases would still run, are not read.
-- +goose Up
CREATE INDEX outbox_open_lease ON outbox (queue, lease_owner, lease_until) WHERE state IN ('queued', 'sent');

-- +goose Down
DROP INDEX outbox_open_lease;
