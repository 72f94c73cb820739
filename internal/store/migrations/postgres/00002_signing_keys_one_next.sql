-- At most one next key, as at most one active key (00001): two replicas loading an empty keyring
-- at once must converge on one next key, so the loser's insert fails (ErrConflict) and it reads
-- the winner's. RotateSigningKeys promotes the old next before inserting the new one, so a
-- rotation never holds two next keys even inside its transaction.
-- +goose Up
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (state) WHERE state = 'next';

-- +goose Down
DROP INDEX signing_keys_one_next;
