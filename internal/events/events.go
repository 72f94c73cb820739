// Package events carries small notices between the replicas of one deployment (a revocation, a
// device decision, later a websocket outbox wake-up). The Local bus serves one process (the SQLite
// default); the PostgreSQL bus uses LISTEN/NOTIFY so every replica hears every publish, its own
// included. Delivery is best effort: every consumer also resyncs from the store periodically.
package events

import (
	"context"
	"sync"
)

// Topics in use. Payloads are small JSON documents (NOTIFY caps them at 8000 bytes).
const (
	TopicRevocation = "revocation"  // token.Revocation as JSON
	TopicChefDevice = "chef_device" // {"id": "...", "state": "..."}
	// TopicClientChanged announces that an OAuth client changed (disabled, new secret or API
	// signature): payload {"id":"cl_…"}. Subscribers drop their cached copies of that client.
	TopicClientChanged = "client_changed"
	// TopicOutbox announces new outbox messages: payload {"queue":"orderpay:…","more":[…]}. The replica
	// holding the queue's peer delivers it (it also polls, so a lost notice only delays).
	TopicOutbox = "outbox"
	// TopicHubConnect announces an exclusive websocket connection: payload {"tenants":[…],
	// "conn","replica","since"}. Other replicas close their older connections of those tenants.
	TopicHubConnect = "hub_connect"
	// TopicHubClose asks every replica to close a tenant's sockets: payload {"tenant","code",
	// "reason","replica"}.
	TopicHubClose = "hub_close"
	// TopicConsoleSignout announces that a console session ended (sign-out): payload {}. Open
	// console streams on every replica re-check their own session in the store; the notice names
	// none, so nothing about a session travels on the bus.
	TopicConsoleSignout = "console_signout"
)

// MaxPayload is the largest payload every Bus carries (PostgreSQL's NOTIFY limit, less what
// the PostgreSQL bus adds to each notice).
const MaxPayload = 7900

// Bus publishes to and subscribes on topics.
type Bus interface {
	// Publish delivers payload to every subscriber of topic on every replica (best effort).
	Publish(ctx context.Context, topic string, payload []byte) error
	// Subscribe calls fn for each payload published on topic until cancel is called. fn must not
	// block for long; it runs on the bus's delivery goroutine.
	Subscribe(topic string, fn func(payload []byte)) (cancel func())
	Close() error
}

// Local is an in-process bus.
type Local struct {
	mu   sync.RWMutex
	next int
	subs map[string]map[int]func([]byte)
}

// NewLocal returns an in-process bus.
func NewLocal() *Local { return &Local{subs: map[string]map[int]func([]byte){}} }

// Publish calls every subscriber of topic synchronously.
func (b *Local) Publish(_ context.Context, topic string, payload []byte) error {
	b.Deliver(topic, payload)
	return nil
}

// Deliver hands payload to the local subscribers of topic. Other bus implementations call it
// when a notice arrives from the database.
func (b *Local) Deliver(topic string, payload []byte) {
	b.mu.RLock()
	fns := make([]func([]byte), 0, len(b.subs[topic]))
	for _, fn := range b.subs[topic] {
		fns = append(fns, fn)
	}
	b.mu.RUnlock()
	for _, fn := range fns {
		fn(payload)
	}
}

// Subscribe registers fn on topic.
func (b *Local) Subscribe(topic string, fn func([]byte)) func() {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := b.next
	b.next++
	if b.subs[topic] == nil {
		b.subs[topic] = map[int]func([]byte){}
	}
	b.subs[topic][id] = fn
	return func() {
		b.mu.Lock()
		delete(b.subs[topic], id)
		b.mu.Unlock()
	}
}

// Close drops every subscriber.
func (b *Local) Close() error {
	b.mu.Lock()
	b.subs = map[string]map[int]func([]byte){}
	b.mu.Unlock()
	return nil
}

// OthersPublisher is a Bus that can announce a notice to the other replicas only.
type OthersPublisher interface {
	PublishOthers(ctx context.Context, topic string, payload []byte) error
}

// PublishOthers announces payload on topic to the subscribers of every other replica, for a
// publisher that has already done on its own replica what the notice asks (an answer handed to
// its own waiters): Publish would hand the notice to this replica's subscribers too, which
// decode it to do nothing, once per request on the hub's hot path. On the Local bus there is no
// other replica and nothing is sent; a Bus that cannot leave its own replica out publishes.
func PublishOthers(ctx context.Context, b Bus, topic string, payload []byte) error {
	switch b := b.(type) {
	case OthersPublisher:
		return b.PublishOthers(ctx, topic, payload)
	case *Local:
		return nil
	}
	return b.Publish(ctx, topic, payload)
}
