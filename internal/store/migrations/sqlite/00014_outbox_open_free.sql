-- The open messages of a queue that no delivery has leased, in queue order. Keep in step with
-- ../postgres/00014_outbox_open_free.sql.
--
-- A claim takes the lowest-seq messages of a queue whose lease is free. Through
-- outbox_open_queue it walked the queue from its lowest seq: every message the claiming delivery
-- holds on a live lease (events written and awaiting their done marks, requests awaiting their
-- answers) and, on PostgreSQL, the index entries each done mark leaves at the front of the queue
-- until a vacuum — 1 100-2 500 buffers a claim in bench runs. Through this index the messages
-- never leased (or released) are read from the first one; those whose lease ended are found
-- through outbox_open_lease by lease end. A claim's update, which sets lease_owner, moves a
-- message out of this index; a release puts it back.
-- +goose Up
CREATE INDEX outbox_open_free ON outbox (queue, seq) WHERE state IN ('queued', 'sent') AND lease_owner = '';

-- +goose Down
DROP INDEX outbox_open_free;
