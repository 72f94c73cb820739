package sqlstore

import (
	"context"
	"slices"
	"sync"
)

// combiner gathers the requests of one kind that arrive while a statement for earlier ones is in
// flight, and sends them together as the next statement: on a database server one round trip,
// one transaction and one commit for all of them, where the server's CPU per transaction is what
// limits the write path. Nothing waits for company: a request that finds no statement in flight
// is sent at once, alone, by its own caller. Every caller is answered only after the statement
// that carried its request has returned (committed, or failed for all of them).
type combiner[R any] struct {
	max  int                                         // requests per statement
	send func(ctx context.Context, reqs []R) []error // one statement; one error per request

	mu      sync.Mutex
	queue   []*combined[R]
	running bool
}

type combined[R any] struct {
	ctx  context.Context // the caller's: a request whose caller has gone is not sent
	req  R
	err  error
	done chan struct{}
}

// do sends r, with whatever else is waiting, and returns its outcome. When ctx ends first, do
// returns its error; r is not written if ctx ended while it was still queued, and may or may not
// be written if its statement was already taken (as with any statement already sent).
func (c *combiner[R]) do(ctx context.Context, r R) error {
	p := &combined[R]{ctx: ctx, req: r, done: make(chan struct{})}
	c.mu.Lock()
	c.queue = append(c.queue, p)
	if c.running {
		c.mu.Unlock()
	} else {
		c.running = true
		batch := c.take()
		c.mu.Unlock()
		c.run(batch) // p is in it
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// take removes the next statement's requests from the queue; c.mu is held. A request whose
// caller's context has ended is answered with its error and left out: its caller has been told
// it failed, and a write it no longer waits for (a refresh rotation, a single use) would make
// its retry look like a replay.
func (c *combiner[R]) take() []*combined[R] {
	batch := make([]*combined[R], 0, min(len(c.queue), c.max))
	n := 0
	for ; n < len(c.queue) && len(batch) < c.max; n++ {
		p := c.queue[n]
		if err := p.ctx.Err(); err != nil {
			p.err = err
			close(p.done)
			continue
		}
		batch = append(batch, p)
	}
	c.queue = append(c.queue[:0], c.queue[n:]...)
	return batch
}

// splitRepeats splits the requests at order, taken in that order, into batch, those naming no key
// an earlier one of batch names, which one statement decides together, and later, the rest,
// which the sender sends alone after that statement, so each is decided as it would be after the
// request it repeats a key of.
func splitRepeats(order []int, keys func(i int) []string) (batch, later []int) {
	seen := make(map[string]bool, 2*len(order))
	for _, i := range order {
		ks := keys(i)
		if slices.ContainsFunc(ks, func(k string) bool { return seen[k] }) {
			later = append(later, i)
			continue
		}
		for _, k := range ks {
			seen[k] = true
		}
		batch = append(batch, i)
	}
	return batch, later
}

// run sends batch, answers its callers, and hands what queued meanwhile to a new sender.
func (c *combiner[R]) run(batch []*combined[R]) {
	if len(batch) > 0 {
		reqs := make([]R, len(batch))
		for i, p := range batch {
			reqs[i] = p.req
		}
		errs := c.send(context.Background(), reqs) // bounded by the writer's statement timeout
		for i, p := range batch {
			p.err = errs[i]
			close(p.done)
		}
	}
	c.mu.Lock()
	if len(c.queue) == 0 {
		c.running = false
		c.mu.Unlock()
		return
	}
	next := c.take()
	c.mu.Unlock()
	go c.run(next)
}
