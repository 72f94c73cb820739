package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// CheckpointWAL copies every frame of the write-ahead log into the database file and truncates
// the log to zero bytes (PRAGMA wal_checkpoint(TRUNCATE)). SQLite reuses a log after an ordinary
// checkpoint but never shrinks the file, so after a full disk — when checkpoints could not run and
// the log grew as far as the space allowed — this is what gives the space back without a restart.
// It takes the writer's turn like any write; readers in the middle of a read make it report that the
// log could not be truncated yet.
func (s *Store) CheckpointWAL(ctx context.Context) error {
	var busy, frames, done int64
	// Not through Writer(): its statements run inside the group transaction, where SQLite
	// refuses a checkpoint ("database table is locked").
	err := s.group.outside(ctx, func(ctx context.Context, conn *sql.Conn) error {
		return conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &done)
	})
	if err != nil {
		return fmt.Errorf("sqlite: checkpoint: %w", err)
	}
	if busy != 0 {
		return errors.New("sqlite: checkpoint: readers kept the log busy; it was not truncated")
	}
	return nil
}
