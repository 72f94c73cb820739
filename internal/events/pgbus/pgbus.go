// Package pgbus is the event bus for replicas sharing a PostgreSQL database: Publish sends a
// NOTIFY on one channel and every replica's bus, LISTENing on a dedicated connection, hands the
// notice to its local subscribers. The publishing replica delivers to its own subscribers at once,
// in Publish, and ignores the echo of its own NOTIFY, so a revocation takes effect locally even
// while the database is unreachable.
//
// Delivery is best effort, as events.Bus says: notices sent while a listener is reconnecting are
// lost, which is why every consumer also resyncs from the store periodically.
//
// Announcements are sent in groups. PostgreSQL serialises the commits of all transactions that
// NOTIFY (each holds one server-wide lock from its pre-commit until its commit is flushed), so
// one announcement per transaction costs every publisher a round trip and a WAL flush in a
// single queue. Publish instead hands its notice to one sender, which sends everything queued at
// that moment in one transaction (one statement, one commit) while later publishers queue for
// the next: concurrent publishers share a commit. Publish still returns only when its notice was
// sent, with that transaction's error. Within a transaction PostgreSQL delivers notices in the
// order sent and folds identical ones (same sender, topic and payload) into one, which changes
// nothing for idempotent events.
package pgbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/posgate/posgate/internal/events"
)

// Channel is the one PostgreSQL notification channel every posgate replica uses; the topic
// travels in the payload, so subscribing to a new topic never needs a new LISTEN.
const Channel = "posgate_events"

// MaxPayload is the largest payload Publish accepts: PostgreSQL refuses notification payloads of
// 8000 bytes or more, and the sender id and topic share that space.
const MaxPayload = 7999 - idLen - 1 - maxTopic - 1

// The bus carries what events.Bus promises every bus carries.
var _ [MaxPayload - events.MaxPayload]struct{}

const (
	idLen        = 16 // hex characters of the sender id
	maxTopic     = 63
	waitTimeout  = 15 * time.Second // how long the listener waits before checking its connection
	pingTimeout  = 5 * time.Second
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 5 * time.Second
	connectLimit = 10 * time.Second
	sendTimeout  = 10 * time.Second // one group's transaction
	maxGroup     = 128              // notices per transaction (at most ~1 MiB of payload)
)

// Bus is an events.Bus over PostgreSQL LISTEN/NOTIFY.
type Bus struct {
	local  *events.Local
	pool   *pgxpool.Pool // Publish
	listen *pgx.ConnConfig
	id     string
	log    *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	closed bool

	smu     sync.Mutex
	queue   []*group // notices waiting for the sender, in groups of at most maxGroup
	sending bool     // the sender goroutine is running
	sends   atomic.Int64
}

// group is the notices of one transaction; done is closed when it has been sent, err set.
type group struct {
	msgs []string
	done chan struct{}
	err  error
}

var (
	_ events.Bus             = (*Bus)(nil)
	_ events.OthersPublisher = (*Bus)(nil)
)

// New connects to the database named by dsn, starts listening, and returns the bus. The first
// connection must succeed; after that the listener reconnects with backoff whenever it drops.
// ctx bounds only the initial connection.
func New(ctx context.Context, dsn string, log *slog.Logger) (*Bus, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgbus: parse DSN: %w", err)
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = connectLimit
	}
	pcfg.MaxConns = min(pcfg.MaxConns, 4) // publishes are single short statements
	listen := pcfg.ConnConfig.Copy()
	listen.RuntimeParams["application_name"] = "posgate-events"

	var raw [idLen / 2]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	b := &Bus{local: events.NewLocal(), listen: listen, id: hex.EncodeToString(raw[:]), log: log, done: make(chan struct{})}

	conn, err := b.connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgbus: listen: %w", err)
	}
	if b.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("pgbus: connect: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go b.run(runCtx, conn)
	return b, nil
}

// Publish delivers payload to this replica's subscribers of topic at once, then announces it to
// the other replicas with pg_notify (channel and payload are bound parameters, never SQL text).
// The returned error concerns only the announcement.
func (b *Bus) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := b.check(topic, payload); err != nil {
		return err
	}
	b.local.Deliver(topic, payload)
	return b.announce(ctx, b.id+" "+topic+" "+string(payload))
}

// PublishOthers is Publish without the delivery to this replica's subscribers: only the other
// replicas hear it (events.PublishOthers).
func (b *Bus) PublishOthers(ctx context.Context, topic string, payload []byte) error {
	if err := b.check(topic, payload); err != nil {
		return err
	}
	return b.announce(ctx, b.id+" "+topic+" "+string(payload))
}

// check refuses what Publish and PublishOthers cannot send.
func (b *Bus) check(topic string, payload []byte) error {
	if err := checkTopic(topic); err != nil {
		return err
	}
	if len(payload) > MaxPayload {
		return fmt.Errorf("pgbus: payload of %d bytes exceeds %d", len(payload), MaxPayload)
	}
	if !utf8.Valid(payload) || strings.ContainsRune(string(payload), 0) {
		return errors.New("pgbus: payload must be UTF-8 text without NUL bytes")
	}
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return errors.New("pgbus: bus is closed")
	}
	return nil
}

// announce queues msg for the sender, starting it if it is idle, and waits until the group
// holding msg has been sent (or ctx ends: the notice may then be sent or not).
func (b *Bus) announce(ctx context.Context, msg string) error {
	b.smu.Lock()
	if n := len(b.queue); n == 0 || len(b.queue[n-1].msgs) >= maxGroup {
		b.queue = append(b.queue, &group{done: make(chan struct{})})
	}
	g := b.queue[len(b.queue)-1]
	g.msgs = append(g.msgs, msg)
	start := !b.sending
	b.sending = true
	b.smu.Unlock()
	if start {
		go b.send()
	}
	select {
	case <-g.done:
		if g.err != nil {
			return fmt.Errorf("pgbus: notify: %w", g.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pgbus: notify: %w", ctx.Err())
	}
}

// send sends queued groups, one transaction each, until none is left. A group's transaction
// commits without waiting for the WAL flush (synchronous_commit off for it alone, set in the
// statement): a notice is best effort and announces what was stored durably before it, and a
// NOTIFY's commit both holds the server-wide notify lock until it returns and signals the
// listeners only then, so a flush in it delays every notice of every replica behind it.
func (b *Bus) send() {
	for {
		b.smu.Lock()
		if len(b.queue) == 0 {
			b.sending = false
			b.smu.Unlock()
			return
		}
		g := b.queue[0]
		b.queue[0] = nil
		b.queue = b.queue[1:]
		b.smu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
		_, g.err = b.pool.Exec(ctx, `SELECT pg_notify($1, m) FROM unnest($2::text[]) AS m,
			(SELECT set_config('synchronous_commit', 'off', true)) AS async_commit`, Channel, g.msgs)
		cancel()
		b.sends.Add(1)
		close(g.done)
	}
}

// Subscribe calls fn for every payload published on topic, by any replica, until cancel.
func (b *Bus) Subscribe(topic string, fn func(payload []byte)) (cancel func()) {
	return b.local.Subscribe(topic, fn)
}

// Close stops listening, drops every subscriber and releases the connections.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	<-b.done
	b.pool.Close()
	return b.local.Close()
}

func checkTopic(topic string) error {
	if topic == "" || len(topic) > maxTopic {
		return fmt.Errorf("pgbus: topic must be 1 to %d characters", maxTopic)
	}
	for _, r := range topic {
		if r <= ' ' || r >= 0x7f {
			return fmt.Errorf("pgbus: topic %q: only printable ASCII without spaces", topic)
		}
	}
	return nil
}

// connect opens the listening connection and LISTENs.
func (b *Bus) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, b.listen)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{Channel}.Sanitize()); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// run receives notices until ctx ends, reconnecting with capped exponential backoff.
func (b *Bus) run(ctx context.Context, conn *pgx.Conn) {
	defer close(b.done)
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for {
		err := b.receive(ctx, conn)
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("event bus: listening connection lost, reconnecting", "error", err.Error())
		conn.Close(context.Background())
		conn = nil
		backoff := minBackoff
		for conn == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			c, err := b.connect(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				b.log.Warn("event bus: reconnect failed", "error", err.Error(), "retry_in", (backoff * 2).String())
				backoff = min(backoff*2, maxBackoff)
				continue
			}
			conn = c
			b.log.Info("event bus: listening again")
		}
	}
}

// receive delivers notices until the connection fails (its error is returned) or ctx ends. Every
// waitTimeout without a notice it pings the server, so a connection that died silently (a
// half-open TCP connection) is noticed within seconds, not after TCP keepalive gives up.
func (b *Bus) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, waitTimeout)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			b.handle(n.Channel, n.Payload)
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			pctx, cancel := context.WithTimeout(ctx, pingTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
		default:
			return err
		}
	}
}

func (b *Bus) handle(channel, msg string) {
	if channel != Channel {
		return
	}
	sender, rest, ok1 := strings.Cut(msg, " ")
	topic, payload, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || len(sender) != idLen || checkTopic(topic) != nil {
		b.log.Warn("event bus: ignoring malformed notice", "length", len(msg))
		return
	}
	if sender == b.id {
		return // delivered locally in Publish
	}
	b.local.Deliver(topic, []byte(payload))
}
