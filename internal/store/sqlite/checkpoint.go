package sqlite

import (
	"context"
	"errors"
	"fmt"
)

// CheckpointWAL copies every frame of the write-ahead log into the database file and truncates
// the log to zero bytes (PRAGMA wal_checkpoint(TRUNCATE)). SQLite reuses a log after an ordinary
// checkpoint but never shrinks the file, so after a full disk — when checkpoints could not run and
// the log grew as far as the space allowed — this is what gives the space back without a restart.
// It waits for the writer like any write; readers in the middle of a read make it report that the
// log could not be truncated yet.
func (s *Store) CheckpointWAL(ctx context.Context) error {
	var busy, frames, done int64
	if err := s.Writer().QueryRow(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &done); err != nil {
		return fmt.Errorf("sqlite: checkpoint: %w", err)
	}
	if busy != 0 {
		return errors.New("sqlite: checkpoint: readers kept the log busy; it was not truncated")
	}
	return nil
}
