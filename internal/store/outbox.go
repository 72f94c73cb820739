package store

import (
	"context"
	"time"
)

// ---------------------------------------------------------------------------------------------
// Outbox: messages for a websocket peer (orderpay requests to a POS, doshii events to a venue),
// written before the API that accepted them answers, delivered at least once, in order per queue.

// OutboxState is where an outbox message is in its life.
type OutboxState string

const (
	// OutboxQueued: accepted, not yet written to a live socket (or written to one that went away
	// before the message was done, and given back).
	OutboxQueued OutboxState = "queued"
	// OutboxSent: written to a live socket; waiting for the peer's answer (orderpay).
	OutboxSent OutboxState = "sent"
	// OutboxDone: finished — answered by the peer (orderpay), or written to a live socket when no
	// answer is expected (doshii events). Answer holds the peer's answer, if any.
	OutboxDone OutboxState = "done"
	// OutboxExpired: ExpiresAt passed before the message was done.
	OutboxExpired OutboxState = "expired"
)

// OutboxMessage is one message in a delivery queue. Queue names the peer the messages are for
// ("orderpay:<outlet id>", "doshii:<location id>"); ID is unique within its queue and is what the
// peer sees (RequestID, event id), so a redelivered message keeps it and the peer can drop a
// duplicate.
type OutboxMessage struct {
	Queue     string
	ID        string
	Seq       int64  // assigned by the store on enqueue; increasing, so it orders a queue
	BodyHash  []byte // SHA-256 of what the caller asked to send: same ID + other hash is a conflict
	Payload   []byte // the frame sent to the peer
	State     OutboxState
	CreatedAt time.Time
	ExpiresAt time.Time
	Attempts  int // how many times it was claimed for delivery
	// LeaseOwner/LeaseUntil: the delivery (one connection on one replica) that claimed it last.
	// A lease that has run out, or was released, lets another delivery claim the message again.
	LeaseOwner string
	LeaseUntil *time.Time
	SentAt     *time.Time
	DoneAt     *time.Time
	Answer     []byte // the peer's answer (orderpay), nil when none is expected
}

// Outbox stores delivery queues. Every transition is a conditional update, so two replicas
// racing on one message cannot both win.
type Outbox interface {
	// EnqueueOutbox stores m as queued (Seq, State and Attempts are set by the store) and returns
	// it with created=true. If (Queue, ID) exists already, nothing changes and the stored message
	// is returned with created=false — or ErrConflict (with the stored message) when its BodyHash
	// differs. Concurrent enqueues of one (Queue, ID) store one row.
	EnqueueOutbox(ctx context.Context, m *OutboxMessage) (stored *OutboxMessage, created bool, err error)
	// GetOutbox returns one message; ErrNotFound when unknown.
	GetOutbox(ctx context.Context, queue, id string) (*OutboxMessage, error)
	// ClaimOutbox leases to owner, until leaseUntil, at most limit messages of queue that are
	// queued or sent, not expired at now, and not leased to another owner past now — lowest Seq
	// first — and returns them in Seq order with Attempts incremented. A message is claimed by one
	// owner at a time.
	ClaimOutbox(ctx context.Context, queue, owner string, now, leaseUntil time.Time, limit int) ([]*OutboxMessage, error)
	// MarkOutboxSent moves a message owner holds from queued to sent. ErrConflict when owner does
	// not hold it or it is not queued (done or expired meanwhile).
	MarkOutboxSent(ctx context.Context, queue, id, owner string, at time.Time) error
	// CompleteOutbox moves a queued or sent message to done with answer (may be nil), whoever holds
	// it. ErrNotFound when unknown; ErrAlreadyUsed when it is done or expired already.
	CompleteOutbox(ctx context.Context, queue, id string, answer []byte, at time.Time) error
	// ReleaseOutbox gives back every lease owner holds (its connection went away): the messages
	// stay in their state and are claimable again at once.
	ReleaseOutbox(ctx context.Context, owner string) error
	// ExpireOutbox moves every queued or sent message whose ExpiresAt <= now to expired and
	// returns how many.
	ExpireOutbox(ctx context.Context, now time.Time) (int, error)
	// CountOutbox returns how many messages of queue ("" = every queue) are queued or sent.
	CountOutbox(ctx context.Context, queue string) (int, error)
	// DeleteOutboxFinishedBefore deletes done and expired messages that finished (or expired)
	// before t.
	DeleteOutboxFinishedBefore(ctx context.Context, t time.Time) error
}
