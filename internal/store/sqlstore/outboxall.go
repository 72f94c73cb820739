package sqlstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// EnqueueOutboxAll enqueues msgs in one transaction: either every message is stored (or was
// already, with the same body hash) or nothing changes. Each insert does nothing on a duplicate;
// the stored row is then read in the same transaction. On PostgreSQL an insert racing another
// transaction's insert of the same (queue, id) waits for it to end, so the read sees the winner.
func (s *Store) EnqueueOutboxAll(ctx context.Context, msgs []*store.OutboxMessage) ([]*store.OutboxMessage, []bool, error) {
	return s.EnqueueOutboxHeld(ctx, msgs, nil)
}

// EnqueueOutboxHeld is EnqueueOutboxAll with holds (see insertOutbox). One message needs no
// transaction: it is EnqueueOutbox's one statement (two when a hold is refused), without the
// round trips of BEGIN and COMMIT on PostgreSQL.
func (s *Store) EnqueueOutboxHeld(ctx context.Context, msgs []*store.OutboxMessage, holds []*store.OutboxHold) ([]*store.OutboxMessage, []bool, error) {
	return s.EnqueueOutboxCompleting(ctx, msgs, holds, nil, time.Time{})
}

// EnqueueOutboxCompleting is EnqueueOutboxHeld that also completes, in the same transaction and
// before the inserts, the messages done names (each as CompleteOutboxBatch at at: the ids it
// would refuse are left unchanged). A delivery records the messages it wrote this way on the
// next enqueue of their queue, without a write (on SQLite a commit) of its own. Nothing is
// completed when the enqueue fails.
func (s *Store) EnqueueOutboxCompleting(ctx context.Context, msgs []*store.OutboxMessage, holds []*store.OutboxHold, done []store.OutboxCompletion, at time.Time) ([]*store.OutboxMessage, []bool, error) {
	const op = "enqueue outbox messages"
	if len(msgs) == 0 {
		return nil, nil, s.fail(op, errors.New("no message"))
	}
	if holds != nil && len(holds) != len(msgs) {
		return nil, nil, s.fail(op, fmt.Errorf("%d holds for %d messages", len(holds), len(msgs)))
	}
	hold := func(i int) *store.OutboxHold {
		if holds == nil {
			return nil
		}
		return holds[i]
	}
	for i, m := range msgs {
		if err := checkOutboxMessage(m, hold(i)); err != nil {
			return nil, nil, s.fail(op, err)
		}
	}
	var completions []*Stmt
	for _, d := range done {
		if len(d.IDs) == 0 {
			continue
		}
		sts, err := s.completeBatchStmts(op, d.Queue, d.IDs, at)
		if err != nil {
			return nil, nil, s.fail(op, err)
		}
		completions = append(completions, sts...)
	}
	if len(msgs) == 1 && len(completions) == 0 {
		stored, created, err := s.enqueueOne(ctx, msgs[0], hold(0))
		if err != nil {
			if stored != nil {
				return []*store.OutboxMessage{stored}, nil, err
			}
			return nil, nil, err
		}
		return []*store.OutboxMessage{stored}, []bool{created}, nil
	}
	if out, ok, err := s.enqueueNew(ctx, msgs, holds, completions); err != nil {
		return nil, nil, s.fail(op, err)
	} else if ok {
		created := make([]bool, len(msgs))
		for i := range created {
			created[i] = true
		}
		return out, created, nil
	}
	out := make([]*store.OutboxMessage, len(msgs))
	created := make([]bool, len(msgs))
	var conflict *store.OutboxMessage
	err := s.inTx(ctx, op, func(tx Tx) error {
		for _, st := range completions {
			if _, err := tx.Exec(ctx, st.SQL, st.Args...); err != nil {
				return err
			}
		}
		for i, m := range msgs {
			got, err := insertOutbox(ctx, tx, m, hold(i))
			if err == nil {
				out[i], created[i] = got, true
				continue
			}
			if !errors.Is(err, ErrNoRows) {
				return err
			}
			got, err = scanOutbox(tx.QueryRow(ctx, `SELECT `+outboxCols+` FROM outbox WHERE queue = $1 AND id = $2`, m.Queue, m.ID).Scan)
			if errors.Is(err, ErrNoRows) {
				// Deleted by the cleanup of finished messages between the two statements.
				return fmt.Errorf("id %q of queue %q was deleted while enqueued: %w", m.ID, m.Queue, store.ErrUnavailable)
			}
			if err != nil {
				return err
			}
			if !bytes.Equal(got.BodyHash, m.BodyHash) {
				conflict = got
				return fmt.Errorf("id %q of queue %q has another body: %w", m.ID, m.Queue, store.ErrConflict)
			}
			out[i] = got
		}
		return nil
	})
	if err != nil {
		if conflict != nil {
			return []*store.OutboxMessage{conflict}, nil, err
		}
		return nil, nil, err
	}
	return out, created, nil
}

// enqueueNew is EnqueueOutboxCompleting's common case on PostgreSQL, every message new and none
// held by an owner (held by presence or not held): the completions and one statement per message
// in one batch, one round trip and one transaction, instead of BEGIN, a round trip per statement
// and COMMIT. A statement whose insert inserts nothing (the id is stored already, maybe by a
// concurrent enqueue) fails by dividing by zero, which rolls the whole batch back: ok is false
// and nothing changed, and the caller takes the transaction that reads stored messages. So does
// any other failure but an unreachable database (or the end of ctx), which is returned.
func (s *Store) enqueueNew(ctx context.Context, msgs []*store.OutboxMessage, holds []*store.OutboxHold, completions []*Stmt) ([]*store.OutboxMessage, bool, error) {
	if s.dialect != PostgreSQL {
		return nil, false, nil
	}
	stmts := completions
	rows := make([]outboxRow, len(msgs))
	for i, m := range msgs {
		var sql string
		var args []any
		switch {
		case holds == nil || holds[i] == nil:
			sql, args = insertPlainStmt(m)
		case holds[i].Present:
			sql, args = insertPresentStmt(m, holds[i])
		default:
			return nil, false, nil // a hold by owner may insert nothing and then insert queued
		}
		stmts = append(stmts, &Stmt{SQL: `WITH i AS (` + sql + `) SELECT ` + outboxCols + ` FROM i
			WHERE (SELECT 1 / COUNT(*) FROM i) = 1`, Args: args, Scan: rows[i].dest()})
	}
	if err := s.batch(ctx, stmts...); err != nil {
		if ctx.Err() != nil || s.classify(err) == Unavailable || errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
			return nil, false, err
		}
		return nil, false, nil
	}
	out := make([]*store.OutboxMessage, len(msgs))
	for i, st := range stmts[len(completions):] {
		if st.NoRows {
			return nil, false, nil // not reached: a statement returns its row or fails
		}
		out[i] = rows[i].message()
	}
	return out, true, nil
}

// checkOutboxMessage refuses a message EnqueueOutbox would not store.
func checkOutboxMessage(m *store.OutboxMessage, hold *store.OutboxHold) error {
	switch {
	case hold != nil && (hold.Owner == "") == !hold.Present:
		return errors.New("hold needs an owner or presence, not both")
	case hold != nil && !hold.LeaseUntil.After(m.CreatedAt):
		return fmt.Errorf("hold's lease end %s is not after %s", hold.LeaseUntil, m.CreatedAt)
	case m.Queue == "" || m.ID == "":
		return errors.New("empty queue or id")
	case len(m.BodyHash) == 0 || len(m.Payload) == 0:
		return errors.New("empty body hash or payload")
	case !m.ExpiresAt.After(m.CreatedAt):
		return fmt.Errorf("expiry %s is not after creation %s", m.ExpiresAt, m.CreatedAt)
	}
	return nil
}
