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
	Attempts  int // how many times a delivery took it (a lease renewal by its holder does not count)
	// LeaseOwner/LeaseUntil: the delivery (one connection on one replica) that claimed it last.
	// A lease that has run out, or was released, lets another delivery claim the message again.
	LeaseOwner string
	LeaseUntil *time.Time
	SentAt     *time.Time // the latest write to a socket
	DoneAt     *time.Time // when it became done or expired
	Answer     []byte     // the peer's answer (orderpay), nil when none is expected
}

// OutboxHold asks EnqueueOutboxHeld to store a message already taken by a delivery.
type OutboxHold struct {
	Owner string
	// Present, instead of Owner, names the delivery of the connection presence says holds the
	// message's queue (its tenant): the newest of the queue's presence rows (by Since, then
	// ConnID) seen at or after SeenSince, whose delivery owner is PresenceOwner(Replica,
	// ConnID). With no such row the message is stored queued. The replica that accepted a
	// message hands it, in the same statement, to the replica holding the peer's socket.
	Present    bool
	SeenSince  time.Time
	LeaseUntil time.Time
	Sent       bool // mark it sent (a delivery that awaits answers)
}

// OutboxCompletion names messages of one queue that were written to their peers, for an enqueue to
// complete in its transaction (EnqueueOutboxCompleting of the SQL stores): a delivery's done
// marks ride on the next enqueue instead of being a write of their own.
type OutboxCompletion struct {
	Queue string
	IDs   []string // at most 1000
}

// PresenceOwner is the lease owner of the delivery a connection starts on its replica, the one
// a hold by presence (OutboxHold.Present) gives a message to.
func PresenceOwner(replica, connID string) string { return replica + "/" + connID }

// Outbox stores delivery queues. Every transition is a conditional update, so two replicas
// racing on one message cannot both win. A message is open while it is queued or sent.
//
// Order: a queue is delivered in Seq order, and Seq follows the order in which enqueues returned
// (enqueues running concurrently have no order between them). A queue is held by one delivery
// at a time: while one owner holds a live lease on an open message of a queue, no other owner
// can claim from it, so a reconnecting peer cannot receive a newer message before the older ones
// given to its previous connection.
type Outbox interface {
	// EnqueueOutbox stores m as queued (Seq, State, Attempts, lease, SentAt, DoneAt and Answer are
	// set by the store) and returns it with created=true. If (Queue, ID) exists already, nothing
	// changes and the stored message is returned with created=false — or ErrConflict (with the
	// stored message) when its BodyHash differs. Concurrent enqueues of one (Queue, ID) store one
	// row. Queue, ID, BodyHash and Payload must not be empty and ExpiresAt must be after CreatedAt
	// (else an error that is none of the sentinels, and nothing is stored).
	EnqueueOutbox(ctx context.Context, m *OutboxMessage) (stored *OutboxMessage, created bool, err error)
	// EnqueueOutboxAll enqueues msgs (as EnqueueOutbox each, in order) in one transaction: every
	// message is stored, or was already with the same body hash, or nothing changes — so a
	// message that goes to several queues is never accepted into some and not the others. It
	// returns the stored messages and which were created. ErrConflict when one exists with
	// another body hash (then nothing is stored and the first value holds that stored message);
	// a message that EnqueueOutbox would refuse is refused the same way, and nothing is stored.
	EnqueueOutboxAll(ctx context.Context, msgs []*OutboxMessage) (stored []*OutboxMessage, created []bool, err error)
	// EnqueueOutboxHeld is EnqueueOutboxAll where holds (nil, or one per message, each nil or
	// not) may give a new message to a delivery as it is stored, so the replica that holds the
	// peer's socket writes it at once without claiming it. msgs[i], when created, is stored taken
	// by holds[i].Owner — Attempts 1, leased until holds[i].LeaseUntil, and, with Sent, sent at
	// its CreatedAt (which is the "now" of the decision) — if at that moment its queue has no
	// open, unexpired message other than those the owner holds on a live lease; otherwise it is
	// stored queued as EnqueueOutboxAll would. A hold by presence (Present) decides its owner
	// in the same statement and then applies the same condition. The returned message tells
	// which (LeaseOwner). A message that existed already is returned as stored, unchanged. A hold
	// with neither or both of an Owner and Present, or a LeaseUntil not after the message's
	// CreatedAt, is refused and nothing is stored.
	EnqueueOutboxHeld(ctx context.Context, msgs []*OutboxMessage, holds []*OutboxHold) (stored []*OutboxMessage, created []bool, err error)
	// GetOutbox returns one message; ErrNotFound when unknown.
	GetOutbox(ctx context.Context, queue, id string) (*OutboxMessage, error)
	// ClaimOutbox leases to owner, until leaseUntil, at most limit (<= 0: 100; at most 1000) open
	// messages of queue that are not expired at now (ExpiresAt > now) and whose lease is free
	// (released, never taken, run out at now) — the lowest Seq first — and returns them in Seq
	// order with Attempts incremented. Messages owner already holds on a live lease are left as
	// they are (not returned, not renewed: RenewOutbox keeps them), and do not stop the claim. It
	// returns none while another owner holds a live lease (LeaseUntil > now) on an open message
	// of the queue, and never a message after one it had to skip, so what it returns continues
	// the queue in order. Of concurrent claimers of one message exactly one gets it. leaseUntil
	// must be after now.
	ClaimOutbox(ctx context.Context, queue, owner string, now, leaseUntil time.Time, limit int) ([]*OutboxMessage, error)
	// ClaimOutboxSent is ClaimOutbox for a delivery that writes what it claims at once (and
	// awaits answers): in the same write it marks each message it takes sent at now, as
	// MarkOutboxSent would. A message whose write then fails stays sent, leased to owner until
	// released: "sent" means handed to a live connection, which may still go away before the
	// peer reads it.
	ClaimOutboxSent(ctx context.Context, queue, owner string, now, leaseUntil time.Time, limit int) ([]*OutboxMessage, error)
	// RenewOutbox moves to leaseUntil the lease of every open message of queue owner holds on a live lease
	// at now (LeaseUntil > now), in one write, and returns their ids (in no order). A lease that
	// has run out is not renewed: another delivery may have claimed the message since. State,
	// SentAt and Attempts are kept. leaseUntil must be after now.
	RenewOutbox(ctx context.Context, queue, owner string, now, leaseUntil time.Time) ([]string, error)
	// MarkOutboxSent records that owner wrote a message it holds to a socket at `at`: queued (or
	// sent, on a redelivery) becomes sent with SentAt = at; the lease is kept. ErrNotFound when
	// unknown; ErrConflict when owner is not its lease owner (never claimed, released, or claimed
	// by another since) or it is done or expired.
	MarkOutboxSent(ctx context.Context, queue, id, owner string, at time.Time) error
	// CompleteOutbox moves an open message to done at `at` with answer (may be nil), whoever holds
	// it, and ends its lease. ErrNotFound when unknown; ErrAlreadyUsed when it is done or expired
	// already (of concurrent completions, and of a completion racing ExpireOutbox, one wins).
	CompleteOutbox(ctx context.Context, queue, id string, answer []byte, at time.Time) error
	// CompleteOutboxBatch is CompleteOutbox with no answer for each of ids (at most 1000) of
	// queue, in one write (a batch of events written to a socket). An id CompleteOutbox would
	// refuse (unknown, done or expired) is left unchanged and is no error; it returns how many it
	// completed. Of concurrent completions of one message exactly one counts it.
	CompleteOutboxBatch(ctx context.Context, queue string, ids []string, at time.Time) (int, error)
	// AnswerOutbox stores the peer's answer to a message it was given: like CompleteOutbox, but
	// only for a message a delivery took (Attempts > 0), and it returns the message as it now
	// stands, so that the answer needs no read before or after. ErrNotFound when the message is
	// unknown or was never taken by a delivery (the peer cannot have received it); ErrAlreadyUsed
	// when it is done or expired already.
	AnswerOutbox(ctx context.Context, queue, id string, answer []byte, at time.Time) (*OutboxMessage, error)
	// ReleaseOutbox gives back every lease owner holds on open messages of queue (its connection
	// went away): the messages stay in their state and are claimable again at once.
	ReleaseOutbox(ctx context.Context, queue, owner string) error
	// ExpireOutbox moves every open message whose ExpiresAt <= now to expired (DoneAt = now,
	// lease ended) and returns how many.
	ExpireOutbox(ctx context.Context, now time.Time) (int, error)
	// CountOutbox returns how many messages of queue ("" = every queue) are open.
	CountOutbox(ctx context.Context, queue string) (int, error)
	// ListOutboxClaimable returns, in no order and each once, the queues that have an open
	// message unexpired at now whose lease is free (released, never taken, run out at now): every
	// queue a claim at now could take something from (and perhaps some it could not, whose
	// older message another owner holds). It is a read: a poller claims only these queues.
	ListOutboxClaimable(ctx context.Context, now time.Time) ([]string, error)
	// DeleteOutboxFinishedBefore deletes done and expired messages whose DoneAt is before t and
	// returns how many. Open messages are never deleted.
	DeleteOutboxFinishedBefore(ctx context.Context, t time.Time) (int, error)
}
