package sqlstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/posgate/posgate/internal/store"
)

const outboxCols = `seq, queue, id, body_hash, payload, state, created_at, expires_at, attempts, lease_owner, lease_until, sent_at, done_at, answer`

// open is the SQL condition of a message still to be delivered; it is also the predicate of the
// partial indexes that cover the delivery path, so it must stay textually the same as theirs.
const outboxOpen = `state IN ('queued', 'sent')`

// openByID is open for the statements that name a message by (queue, id): the same rows as
// outboxOpen (state is one of four, by the table's CHECK), written so that no partial index's
// predicate follows from it. Such a statement can then read only the unique (queue, id) index,
// one entry. With outboxOpen a generic plan on a table without fresh statistics read a queue's
// open index with "queue = $1" alone and filtered on id: every open message of the queue, and
// every index entry a done mark left behind, for each answer and each done mark.
const openByID = `state NOT IN ('done', 'expired')`

// maxSeq is above every seq: a claim with no message left out may take all its candidates.
const maxSeq = `9223372036854775807`

// Claim bounds: a non-positive limit means defaultClaimLimit; larger ones are capped.
const (
	defaultClaimLimit = 100
	maxClaimLimit     = 1000
)

func scanOutbox(sc func(...any) error) (*store.OutboxMessage, error) {
	var r outboxRow
	if err := sc(r.dest()...); err != nil {
		return nil, err
	}
	return r.message(), nil
}

// outboxRow receives one row of outboxCols.
type outboxRow struct {
	m                          store.OutboxMessage
	state                      string
	created, expires, attempts int64
	leaseUntil, sent, done     *int64
}

func (r *outboxRow) dest() []any {
	return []any{&r.m.Seq, &r.m.Queue, &r.m.ID, &r.m.BodyHash, &r.m.Payload, &r.state, &r.created, &r.expires, &r.attempts,
		&r.m.LeaseOwner, &r.leaseUntil, &r.sent, &r.done, &r.m.Answer}
}

func (r *outboxRow) message() *store.OutboxMessage {
	m := r.m
	m.State = store.OutboxState(r.state)
	m.CreatedAt, m.ExpiresAt = fromMS(r.created), fromMS(r.expires)
	m.Attempts = int(r.attempts)
	m.LeaseUntil, m.SentAt, m.DoneAt = fromMSPtr(r.leaseUntil), fromMSPtr(r.sent), fromMSPtr(r.done)
	m.BodyHash, m.Payload, m.Answer = blobOut(m.BodyHash), blobOut(m.Payload), blobOut(m.Answer)
	return &m
}

// EnqueueOutbox inserts m as queued, or returns the stored message of (Queue, ID). The insert is
// one statement that does nothing on a duplicate, so of concurrent enqueues of one id the unique
// index lets exactly one insert; the others then read the winner's row. A row deleted between the
// two statements (cleanup of a finished message) is inserted again on the next round.
func (s *Store) EnqueueOutbox(ctx context.Context, m *store.OutboxMessage) (*store.OutboxMessage, bool, error) {
	return s.enqueueOne(ctx, m, nil)
}

func (s *Store) enqueueOne(ctx context.Context, m *store.OutboxMessage, hold *store.OutboxHold) (*store.OutboxMessage, bool, error) {
	const op = "enqueue outbox message"
	if err := checkOutboxMessage(m, hold); err != nil {
		return nil, false, s.fail(op, err)
	}
	w, err := s.writer()
	if err != nil {
		return nil, false, s.fail(op, err)
	}
	for range 3 {
		out, err := insertOutbox(ctx, w, m, hold)
		if err == nil {
			return out, true, nil
		}
		if !errors.Is(err, ErrNoRows) {
			return nil, false, s.fail(op, err)
		}
		stored, err := s.GetOutbox(ctx, m.Queue, m.ID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		if !bytes.Equal(stored.BodyHash, m.BodyHash) {
			return stored, false, s.fail(op, fmt.Errorf("id %q of queue %q has another body: %w", m.ID, m.Queue, store.ErrConflict))
		}
		return stored, false, nil
	}
	return nil, false, s.fail(op, fmt.Errorf("id %q of queue %q keeps being deleted while enqueued: %w", m.ID, m.Queue, store.ErrUnavailable))
}

// insertOutbox inserts m, queued or (hold) taken by hold.Owner, and returns the new row; ErrNoRows
// when (Queue, ID) exists already. The held insert decides in its own statement whether the
// queue lets the message be taken at once: only when it has no open, unexpired message but those
// hold.Owner holds on a live lease — which that delivery has taken before, so they are older and
// already on their way; any other open message (queued, or held by another delivery) is older
// and not yet given to this one, and the new message must not overtake it. The condition is the
// claim's ("nothing of another owner live, nothing left out before it") for a claim of exactly
// this message. When it does not hold, the held insert inserts nothing and the message is
// inserted queued, for the deliverer, by the plain statement.
func insertOutbox(ctx context.Context, q Querier, m *store.OutboxMessage, hold *store.OutboxHold) (*store.OutboxMessage, error) {
	if hold != nil && hold.Present {
		return insertOutboxPresent(ctx, q, m, hold)
	}
	if hold != nil {
		var sentAt *int64
		state := string(store.OutboxQueued)
		if hold.Sent {
			state, sentAt = string(store.OutboxSent), msPtr(&m.CreatedAt)
		}
		got, err := scanOutbox(q.QueryRow(ctx, `INSERT INTO outbox (queue, id, body_hash, payload, state, created_at,
				expires_at, attempts, lease_owner, lease_until, sent_at)
			SELECT $1, $2, $3, $4, $7, $5, $6, 1, $8, $9, $10
			WHERE `+heldOnlyBy("$8", "$5")+`
			ON CONFLICT (queue, id) DO NOTHING RETURNING `+outboxCols,
			m.Queue, m.ID, m.BodyHash, m.Payload, ms(m.CreatedAt), ms(m.ExpiresAt), state, hold.Owner, ms(hold.LeaseUntil), sentAt).Scan)
		if !errors.Is(err, ErrNoRows) {
			return got, err
		}
		// Not taken (or it exists): the plain insert tells which.
	}
	sql, args := insertPlainStmt(m)
	return scanOutbox(q.QueryRow(ctx, sql, args...).Scan)
}

// insertOutboxPresent inserts m held by the delivery presence names for its queue, or queued
// when presence names none or the queue does not let it be taken (insertOutbox's condition,
// for that owner), in one statement: ErrNoRows when (Queue, ID) exists already. The owner is
// read in the statement, so no replica reads presence for it, and the message is never stored
// held by an owner the condition was not checked against.
func insertOutboxPresent(ctx context.Context, q Querier, m *store.OutboxMessage, hold *store.OutboxHold) (*store.OutboxMessage, error) {
	sql, args := insertPresentStmt(m, hold)
	return scanOutbox(q.QueryRow(ctx, sql, args...).Scan)
}

// insertPresentStmt is insertOutboxPresent's statement.
func insertPresentStmt(m *store.OutboxMessage, hold *store.OutboxHold) (string, []any) {
	state := string(store.OutboxQueued)
	if hold.Sent {
		state = string(store.OutboxSent)
	}
	// h is computed once (MATERIALIZED: PostgreSQL would otherwise evaluate the subquery once
	// per reference); the condition is heldOnlyBy's, for the owner presence names.
	return `WITH h AS MATERIALIZED (SELECT (SELECT p.owner FROM (SELECT replica || '/' || conn_id AS owner
				FROM presence WHERE tenant = $1 AND seen_at >= $9 ORDER BY since DESC, conn_id DESC LIMIT 1) p
			WHERE ` + heldOnlyBy("p.owner", "$5") + `) AS owner)
		INSERT INTO outbox (queue, id, body_hash, payload, state, created_at, expires_at, attempts, lease_owner, lease_until, sent_at)
		SELECT $1, $2, $3, $4, CASE WHEN h.owner IS NULL THEN 'queued' ELSE $7 END, $5, $6,
			CASE WHEN h.owner IS NULL THEN 0 ELSE 1 END, COALESCE(h.owner, ''),
			CASE WHEN h.owner IS NULL THEN NULL ELSE CAST($8 AS BIGINT) END,
			CASE WHEN h.owner IS NULL OR $7 = 'queued' THEN NULL ELSE CAST($5 AS BIGINT) END
		FROM h WHERE true
		ON CONFLICT (queue, id) DO NOTHING RETURNING ` + outboxCols,
		[]any{m.Queue, m.ID, m.BodyHash, m.Payload, ms(m.CreatedAt), ms(m.ExpiresAt), state, ms(hold.LeaseUntil), ms(hold.SeenSince)}
}

// insertPlainStmt is the statement that inserts m queued (insertOutbox without a hold).
func insertPlainStmt(m *store.OutboxMessage) (string, []any) {
	return `INSERT INTO outbox (queue, id, body_hash, payload, state, created_at,
			expires_at, attempts, lease_owner) VALUES ($1, $2, $3, $4, 'queued', $5, $6, 0, '')
			ON CONFLICT (queue, id) DO NOTHING RETURNING ` + outboxCols,
		[]any{m.Queue, m.ID, m.BodyHash, m.Payload, ms(m.CreatedAt), ms(m.ExpiresAt)}
}

// heldOnlyBy is the SQL condition "queue $1 has no open message unexpired at now but those owner
// holds on a live lease" (owner and now are SQL expressions; owner is never empty). It is three
// searches of outbox_open_lease, each stopping at its first entry: an open message of another
// lease owner, below or above owner in (queue, lease_owner) order, and one of owner's whose lease
// ended. (A message with an owner always has a lease end and one without has neither: every
// statement that sets lease_owner sets lease_until with it, so "owner's, with no lease end" is
// never there to find.) A single walk of the queue's open messages in seq order read what owner
// holds live — events written and awaiting their done marks, requests awaiting their answers —
// and on PostgreSQL the index entries each done mark leaves behind until a vacuum, so its cost
// grew with the throughput and the time since the last vacuum. Each search is a scalar subquery
// (PostgreSQL never turns one into a join over the queue) ordered as the index is, so a generic
// plan, which cannot tell how many messages a queue has, still reads the index rather than
// scanning the table for the first match. With a deterministic collation (the only kind posgate
// creates) "<" and ">" together are "<>".
func heldOnlyBy(owner, now string) string {
	none := func(cond, order string) string {
		return `(SELECT 1 FROM outbox WHERE queue = $1 AND ` + outboxOpen + ` AND ` + cond + ` AND ` + unexpiredAt(now) +
			` ORDER BY ` + order + ` LIMIT 1) IS NULL`
	}
	return none(`lease_owner < `+owner, `lease_owner`) + ` AND ` + none(`lease_owner > `+owner, `lease_owner`) +
		` AND ` + none(`lease_owner = `+owner+` AND lease_until <= `+now, `lease_until`)
}

// unexpiredAt is the condition "expires_at > now" for the searches of a queue through
// outbox_open_lease, written so that no index can use it ("+ 0": an expression, not the column):
// it is a filter on the rows those searches find. As a plain comparison, outbox_open_expiry
// could serve it, and a generic plan made while that index was smaller than outbox_open_lease
// (both estimated at one row, the table never analyzed) read every open, unexpired message by
// expiry and sorted them, three times per hand-off: 22 000 buffers and 66 ms for one insert,
// caught with auto_explain in a bench run, on two of the pool's connections for the whole run.
func unexpiredAt(now string) string { return `expires_at + 0 > ` + now }

// GetOutbox returns the message id of queue.
func (s *Store) GetOutbox(ctx context.Context, queue, id string) (*store.OutboxMessage, error) {
	r, err := s.reader()
	if err != nil {
		return nil, s.fail("get outbox message", err)
	}
	m, err := scanOutbox(r.QueryRow(ctx, `SELECT `+outboxCols+` FROM outbox WHERE queue = $1 AND id = $2`, queue, id).Scan)
	return m, s.fail("get outbox message", err)
}

// ClaimOutbox leases the head of queue to owner in one statement. The CTE picks the lowest-Seq
// open, unexpired messages whose lease is free; on PostgreSQL it locks them FOR UPDATE SKIP
// LOCKED, so a concurrent claimer skips them instead of waiting, and a row another claimer
// committed meanwhile is re-checked against the latest version and dropped. The update then takes
// a candidate only if no open message of the queue is leased live to another owner and no open
// message before it was left out of the candidates (locked by a concurrent claimer): a claim
// continues the queue in order or takes nothing. Both conditions are uncorrelated subqueries —
// "another owner holds a live lease" and "the lowest seq left out" — so each runs once per
// claim, not once per candidate. What owner holds on a live lease is neither a candidate nor
// "left out": it was taken before (it is older than any candidate) and is renewed by
// RenewOutbox, so a claim writes only the rows it takes — a claim that also renewed them
// rewrote every message still awaiting its answer on each delivery. SQLite runs one write
// statement at a time, so there the CTE sees every committed claim and needs no lock clause.
func (s *Store) ClaimOutbox(ctx context.Context, queue, owner string, now, leaseUntil time.Time, limit int) ([]*store.OutboxMessage, error) {
	return s.claimOutbox(ctx, queue, owner, now, leaseUntil, limit, "")
}

// ClaimOutboxSent is ClaimOutbox that also marks what it takes sent, in the same statement.
func (s *Store) ClaimOutboxSent(ctx context.Context, queue, owner string, now, leaseUntil time.Time, limit int) ([]*store.OutboxMessage, error) {
	return s.claimOutbox(ctx, queue, owner, now, leaseUntil, limit, `, state = 'sent', sent_at = $3`)
}

func (s *Store) claimOutbox(ctx context.Context, queue, owner string, now, leaseUntil time.Time, limit int, set string) ([]*store.OutboxMessage, error) {
	const op = "claim outbox messages"
	if owner == "" {
		return nil, s.fail(op, errors.New("empty owner"))
	}
	if !leaseUntil.After(now) {
		return nil, s.fail(op, fmt.Errorf("lease end %s is not after %s", leaseUntil, now))
	}
	if limit <= 0 {
		limit = defaultClaimLimit
	}
	limit = min(limit, maxClaimLimit)
	lock := ""
	if s.dialect == PostgreSQL {
		lock = ` FOR UPDATE SKIP LOCKED`
	}
	w, err := s.writer()
	if err != nil {
		return nil, s.fail(op, err)
	}
	rows, err := w.Query(ctx, `WITH c AS (
			SELECT seq FROM outbox WHERE queue = $1 AND `+outboxOpen+` AND expires_at > $3
				AND (lease_until IS NULL OR lease_until <= $3)
			ORDER BY seq LIMIT $5`+lock+`)
		UPDATE outbox SET lease_owner = $2, lease_until = $4, attempts = attempts + 1`+set+s.asyncCommitFrom()+`
		WHERE seq IN (SELECT seq FROM c) AND NOT EXISTS (
			SELECT 1 FROM outbox o WHERE o.queue = $1 AND o.`+outboxOpen+` AND o.expires_at > $3
				AND o.lease_owner <> $2 AND o.lease_until > $3)
		AND seq < COALESCE((SELECT MIN(o.seq) FROM outbox o WHERE o.queue = $1 AND o.`+outboxOpen+` AND o.expires_at > $3
				AND o.seq NOT IN (SELECT seq FROM c)
				AND (o.lease_owner <> $2 OR o.lease_until IS NULL OR o.lease_until <= $3)), `+maxSeq+`)
		RETURNING `+outboxCols, queue, owner, ms(now), ms(leaseUntil), int64(limit))
	if err != nil {
		return nil, s.fail(op, err)
	}
	defer rows.Close()
	var out []*store.OutboxMessage
	for rows.Next() {
		m, err := scanOutbox(rows.Scan)
		if err != nil {
			return nil, s.fail(op, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(op, err)
	}
	// RETURNING has no defined order on either engine.
	slices.SortFunc(out, func(a, b *store.OutboxMessage) int { return compareInt64(a.Seq, b.Seq) })
	return out, nil
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// MarkOutboxSent moves a message owner holds to sent with one conditional update; when it
// changes nothing, a second read tells an unknown message from one that is not owner's (or no
// longer open).
func (s *Store) MarkOutboxSent(ctx context.Context, queue, id, owner string, at time.Time) error {
	const op = "mark outbox message sent"
	if owner == "" {
		return s.fail(op, errors.New("empty owner"))
	}
	n, err := s.exec(ctx, `UPDATE outbox SET state = 'sent', sent_at = $4
		WHERE queue = $1 AND id = $2 AND lease_owner = $3 AND `+openByID, queue, id, owner, ms(at))
	if err != nil {
		return s.fail(op, err)
	}
	if n == 1 {
		return nil
	}
	return s.fail(op, s.outboxMiss(ctx, queue, id, store.ErrConflict))
}

// CompleteOutbox moves an open message to done with one conditional update: of concurrent
// completions (and of a completion racing ExpireOutbox) exactly one changes the row.
func (s *Store) CompleteOutbox(ctx context.Context, queue, id string, answer []byte, at time.Time) error {
	const op = "complete outbox message"
	n, err := s.exec(ctx, completeOneSQL, queue, id, ms(at), blob(answer))
	if err != nil {
		return s.fail(op, err)
	}
	if n == 1 {
		return nil
	}
	return s.fail(op, s.outboxMiss(ctx, queue, id, store.ErrAlreadyUsed))
}

// maxOutboxBatch bounds the ids of one batch call, as maxClaimLimit bounds a claim.
const maxOutboxBatch = maxClaimLimit

func idList(op string, ids []string) (string, error) {
	if len(ids) > maxOutboxBatch {
		return "", fmt.Errorf("%s: %d ids, at most %d", op, len(ids), maxOutboxBatch)
	}
	for _, id := range ids {
		if id == "" {
			return "", fmt.Errorf("%s: empty id", op)
		}
	}
	return listIn(ids), nil
}

// CompleteOutboxBatch is CompleteOutbox without an answer for several messages in one write;
// the ids it would refuse are left unchanged and not counted. On PostgreSQL the write commits
// without waiting for the WAL flush, as a claim does (see asyncCommitFrom): a done mark lost with
// a crash of PostgreSQL itself leaves the event leased to its delivery, which writes it again
// under its id after the lease, and the peer drops the duplicate.
func (s *Store) CompleteOutboxBatch(ctx context.Context, queue string, ids []string, at time.Time) (int, error) {
	const op = "complete outbox messages"
	if len(ids) == 0 {
		return 0, nil
	}
	stmts, err := s.completeBatchStmts(op, queue, ids, at)
	if err != nil {
		return 0, s.fail(op, err)
	}
	if s.dialect != PostgreSQL {
		n, err := s.exec(ctx, stmts[0].SQL, stmts[0].Args...)
		return int(n), s.fail(op, err)
	}
	async := &Stmt{SQL: `SELECT set_config('synchronous_commit', 'off', true)`}
	if err := s.batch(ctx, append([]*Stmt{async}, stmts...)...); err != nil {
		return 0, s.fail(op, err)
	}
	var n int64
	for _, st := range stmts {
		n += st.Affected
	}
	return int(n), nil
}

// completeOneSQL is CompleteOutbox's update, which also completes each message of a batch on
// PostgreSQL.
const completeOneSQL = `UPDATE outbox SET state = 'done', done_at = $3, answer = $4, lease_owner = '', lease_until = NULL
		WHERE queue = $1 AND id = $2 AND ` + openByID

// completeBatchStmts is CompleteOutboxBatch's write: on PostgreSQL one update per id (run as one
// batch: one round trip, one transaction), on SQLite one update of the ids in a JSON array.
//
// PostgreSQL plans a prepared statement once per connection and may keep that plan for the
// connection's life, whatever the table becomes (a plan is redone after an ANALYZE of the table,
// which a fresh or quiet one has not had). One update of "id = ANY (the ids)" planned while the
// table was a few pages read the unique (queue, id) index by queue alone and filtered on id:
// every message of the queue, done or not, for each batch (2 202 buffers a batch in a 30 s
// bench run, growing with the run). An update naming (queue, id) by equality reads that index
// by both columns under any plan: one entry, a few buffers, per id.
func (s *Store) completeBatchStmts(op, queue string, ids []string, at time.Time) ([]*Stmt, error) {
	list, err := idList(op, ids)
	if err != nil {
		return nil, err
	}
	if s.dialect != PostgreSQL {
		return []*Stmt{{SQL: `UPDATE outbox SET state = 'done', done_at = $3, answer = NULL, lease_owner = '', lease_until = NULL
		WHERE queue = $1 AND id IN (SELECT value FROM json_each($2)) AND ` + openByID, Args: []any{queue, list, ms(at)}}}, nil
	}
	stmts := make([]*Stmt, len(ids))
	for i, id := range ids {
		stmts[i] = &Stmt{SQL: completeOneSQL, Args: []any{queue, id, ms(at), nil}}
	}
	return stmts, nil
}

// AnswerOutbox completes a message that was delivered, returning the row, in one statement; a
// miss is explained by one more read.
func (s *Store) AnswerOutbox(ctx context.Context, queue, id string, answer []byte, at time.Time) (*store.OutboxMessage, error) {
	const op = "answer outbox message"
	w, err := s.writer()
	if err != nil {
		return nil, s.fail(op, err)
	}
	m, err := scanOutbox(w.QueryRow(ctx, `UPDATE outbox SET state = 'done', done_at = $3, answer = $4, lease_owner = '', lease_until = NULL
		WHERE queue = $1 AND id = $2 AND attempts > 0 AND `+openByID+` RETURNING `+outboxCols,
		queue, id, ms(at), blob(answer)).Scan)
	if !errors.Is(err, ErrNoRows) {
		return m, s.fail(op, err)
	}
	var state string
	switch err := w.QueryRow(ctx, `SELECT state FROM outbox WHERE queue = $1 AND id = $2`, queue, id).Scan(&state); {
	case errors.Is(err, ErrNoRows):
		return nil, s.fail(op, store.ErrNotFound)
	case err != nil:
		return nil, s.fail(op, err)
	case state == string(store.OutboxQueued) || state == string(store.OutboxSent):
		// Open and yet not updated: no delivery had taken it when the update ran.
		return nil, s.fail(op, fmt.Errorf("id %q of queue %q was never delivered: %w", id, queue, store.ErrNotFound))
	}
	return nil, s.fail(op, store.ErrAlreadyUsed)
}

// outboxMiss explains a conditional update that changed nothing: ErrNotFound when the message
// does not exist, else ifExists. It reads through the writer so it sees what the update saw.
func (s *Store) outboxMiss(ctx context.Context, queue, id string, ifExists error) error {
	w, err := s.writer()
	if err != nil {
		return err
	}
	var one int64
	if err := w.QueryRow(ctx, `SELECT 1 FROM outbox WHERE queue = $1 AND id = $2`, queue, id).Scan(&one); err != nil {
		return err
	}
	return ifExists
}

// asyncCommitFrom is, on PostgreSQL, a FROM item for an UPDATE that commits without waiting for
// the WAL flush (synchronous_commit off for this transaction only: set_config(..., true) in the
// statement itself, so it costs no round trip). Only the delivery's own bookkeeping uses it —
// claims (lease and "sent" mark) and lease renewals — never an enqueue or an answer. Losing such
// a commit takes a crash of PostgreSQL itself (a posgate process killed with kill -9 loses
// nothing: the commit is in PostgreSQL's WAL buffers) and leaves the message as it was before
// the claim or renewal: queued, or leased until the old end. At worst it is delivered again
// under its own id, which the protocol tolerates (the peer drops a duplicate RequestID or event
// id). A later durable commit flushes the WAL up to itself, so an answer stored after a claim
// makes the claim durable too. SQLite's durability is per connection and left as it is.
func (s *Store) asyncCommitFrom() string {
	if s.dialect == PostgreSQL {
		return ` FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit`
	}
	return ""
}

// RenewOutbox extends the live leases owner holds on open messages to leaseUntil in one
// statement and returns their ids.
func (s *Store) RenewOutbox(ctx context.Context, queue, owner string, now, leaseUntil time.Time) ([]string, error) {
	const op = "renew outbox leases"
	if owner == "" {
		return nil, s.fail(op, errors.New("empty owner"))
	}
	if !leaseUntil.After(now) {
		return nil, s.fail(op, fmt.Errorf("lease end %s is not after %s", leaseUntil, now))
	}
	w, err := s.writer()
	if err != nil {
		return nil, s.fail(op, err)
	}
	rows, err := w.Query(ctx, `UPDATE outbox SET lease_until = $3`+s.asyncCommitFrom()+`
		WHERE queue = $4 AND `+outboxOpen+` AND lease_owner = $1 AND lease_until > $2 RETURNING id`, owner, ms(now), ms(leaseUntil), queue)
	if err != nil {
		return nil, s.fail(op, err)
	}
	ids, err := scanStrings(rows)
	return ids, s.fail(op, err)
}

// scanStrings reads rows of one text column and closes them; an empty result is an empty slice.
func scanStrings(rows Rows) ([]string, error) {
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// ReleaseOutbox ends every lease owner holds on an open message of queue.
func (s *Store) ReleaseOutbox(ctx context.Context, queue, owner string) error {
	if owner == "" {
		return s.fail("release outbox leases", errors.New("empty owner"))
	}
	_, err := s.exec(ctx, `UPDATE outbox SET lease_owner = '', lease_until = NULL WHERE queue = $1 AND `+outboxOpen+` AND lease_owner = $2`, queue, owner)
	return s.fail("release outbox leases", err)
}

// ExpireOutbox moves every open message with expires_at <= now to expired in one statement; a
// completion racing it either changed the row first (and it no longer matches) or finds it expired.
func (s *Store) ExpireOutbox(ctx context.Context, now time.Time) (int, error) {
	n, err := s.exec(ctx, `UPDATE outbox SET state = 'expired', done_at = $1, lease_owner = '', lease_until = NULL
		WHERE `+outboxOpen+` AND expires_at <= $1`, ms(now))
	return int(n), s.fail("expire outbox messages", err)
}

// CountOutbox counts the open messages of queue ("" = all queues).
func (s *Store) CountOutbox(ctx context.Context, queue string) (int, error) {
	r, err := s.reader()
	if err != nil {
		return 0, s.fail("count outbox messages", err)
	}
	var n int64
	if queue == "" {
		err = r.QueryRow(ctx, `SELECT COUNT(*) FROM outbox WHERE `+outboxOpen).Scan(&n)
	} else {
		err = r.QueryRow(ctx, `SELECT COUNT(*) FROM outbox WHERE queue = $1 AND `+outboxOpen, queue).Scan(&n)
	}
	return int(n), s.fail("count outbox messages", err)
}

// claimableQueuesPG is ListOutboxClaimable's statement on PostgreSQL. "SELECT DISTINCT queue"
// over the open messages read and sorted every one of them at each poll of each replica, and a
// queue no socket takes (a vendor without a cloud socket keeps every event for
// doshii.event_ttl) holds up to event_ttl × the event rate: 9 000 rows and 800 buffers 10 s into
// a bench run at 1 000 events/s. This is a skip scan of outbox_open_lease, one search per queue
// (the greatest queue name below the last one, with an open, unexpired message), and then, for
// each queue, two searches that stop at their first entry: a message with no lease (released or
// never taken: no owner, and so no lease end), and one whose lease has ended (its lease end is
// in the index, so the messages leased live are passed over without reading them).
//
// The walk is backwards, newest lease first, and reads the rows (expires_at is not in the
// index): the entries each done mark leaves in the open indexes until a vacuum are at the old
// end of a queue, and a row found dead marks its entry dead, so the next search skips it without
// a read. An index-only walk from the old end read every such entry's row, every poll. Each
// search is a scalar subquery ordered as the index is (as in heldOnlyBy), with the expiry as a
// filter no index can serve (see unexpiredAt), so no plan — one made while the table was a few
// rows included — turns it into a join, a scan of the table or a read by expiry. The
// first search's "queue >= the empty string", true of every queue, makes it the same search of
// the index as the next ones: without it, a generic plan made on a small table read the open
// messages by expiry and sorted them, every one.
const claimableQueuesPG = `WITH RECURSIVE q(queue) AS (
		SELECT (SELECT o.queue FROM outbox o WHERE o.` + outboxOpen + ` AND o.queue >= '' AND o.expires_at + 0 > $1
			ORDER BY o.queue DESC, o.lease_owner DESC, o.lease_until DESC LIMIT 1)
		UNION ALL
		SELECT (SELECT o.queue FROM outbox o WHERE o.` + outboxOpen + ` AND o.queue < q.queue AND o.expires_at + 0 > $1
			ORDER BY o.queue DESC, o.lease_owner DESC, o.lease_until DESC LIMIT 1) FROM q WHERE q.queue IS NOT NULL)
	SELECT queue FROM q WHERE queue IS NOT NULL AND (
		(SELECT 1 FROM outbox o WHERE o.queue = q.queue AND o.` + outboxOpen + ` AND o.lease_owner = '' AND o.expires_at + 0 > $1
			ORDER BY o.lease_owner, o.lease_until LIMIT 1) IS NOT NULL
		OR (SELECT 1 FROM outbox o WHERE o.queue = q.queue AND o.` + outboxOpen + ` AND o.lease_owner > '' AND o.lease_until <= $1
			AND o.expires_at + 0 > $1 ORDER BY o.lease_owner, o.lease_until LIMIT 1) IS NOT NULL)`

// ListOutboxClaimable reads the queues with a message a claim at now could take.
func (s *Store) ListOutboxClaimable(ctx context.Context, now time.Time) ([]string, error) {
	const op = "list claimable outbox queues"
	r, err := s.reader()
	if err != nil {
		return nil, s.fail(op, err)
	}
	sql := `SELECT DISTINCT queue FROM outbox WHERE ` + outboxOpen + ` AND expires_at > $1
		AND (lease_until IS NULL OR lease_until <= $1)`
	if s.dialect == PostgreSQL {
		sql = claimableQueuesPG
	}
	rows, err := r.Query(ctx, sql, ms(now))
	if err != nil {
		return nil, s.fail(op, err)
	}
	qs, err := scanStrings(rows)
	return qs, s.fail(op, err)
}

// outboxDeleteBatch bounds one DELETE of finished messages, for the reason auditDeleteBatch does.
const outboxDeleteBatch = 1000

// DeleteOutboxFinishedBefore deletes done and expired messages that finished before t, in
// batches of outboxDeleteBatch (each its own statement) until none is left or ctx ends.
func (s *Store) DeleteOutboxFinishedBefore(ctx context.Context, t time.Time) (int, error) {
	const op = "delete finished outbox messages"
	total := 0
	for {
		n, err := s.exec(ctx, `DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox
			WHERE state IN ('done', 'expired') AND done_at < $1 ORDER BY done_at LIMIT $2)`, ms(t), int64(outboxDeleteBatch))
		if err != nil {
			return total, s.fail(op, err)
		}
		total += int(n)
		if n < outboxDeleteBatch {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, s.fail(op, err)
		}
	}
}
