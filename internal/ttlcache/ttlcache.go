// Package ttlcache is the bounded, expiring in-memory cache posgate keeps in front of store reads
// that are repeated on every request (client records, vendor keys, location tokens, unsealed
// keys). Every such cache makes the same trade: a record changed on another replica may be served
// stale for at most the TTL, and a change announced on the event bus drops the entry at once
// (Delete, DeleteFunc or Clear from the subscriber). Entries age by the injected clock, so tests
// advance a fake clock instead of sleeping.
//
// The cache is an optimisation, never a source of truth: when it is full it first drops expired
// entries and then, if that was not enough, everything, so a burst of distinct keys costs store
// reads and never unbounded memory. Callers cache hits only; a miss must reach the store, so a
// record created a moment ago is found at once.
package ttlcache

import (
	"sync"
	"time"

	"github.com/posgate/posgate/internal/clock"
)

// Cache maps K to V for ttl after each Put, holding a bounded number of entries. It is safe for concurrent
// use. A ttl of zero or less disables it: Get always misses and Put keeps nothing.
type Cache[K comparable, V any] struct {
	clk clock.Clock
	ttl time.Duration
	max int

	mu sync.RWMutex
	m  map[K]entry[V]
}

type entry[V any] struct {
	v      V
	stored time.Time
}

// New returns an empty cache holding at most size entries (at least one). A nil clock is the
// system clock.
func New[K comparable, V any](clk clock.Clock, ttl time.Duration, size int) *Cache[K, V] {
	if clk == nil {
		clk = clock.System{}
	}
	return &Cache[K, V]{clk: clk, ttl: ttl, max: max(1, size), m: map[K]entry[V]{}}
}

// live reports whether an entry stored at stored is still valid at now. An entry stored in the
// future (the clock went back) is not: its age cannot be known.
func (c *Cache[K, V]) live(stored, now time.Time) bool {
	age := now.Sub(stored)
	return age >= 0 && age < c.ttl
}

// Get returns the value stored for k if it has not expired.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	var zero V
	if c.ttl <= 0 {
		return zero, false
	}
	now := c.clk.Now()
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || !c.live(e.stored, now) {
		return zero, false
	}
	return e.v, true
}

// Put stores v for k until the TTL ends (from now by the cache's clock).
func (c *Cache[K, V]) Put(k K, v V) {
	if c.ttl <= 0 {
		return
	}
	now := c.clk.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, replacing := c.m[k]; !replacing && len(c.m) >= c.max {
		for x, e := range c.m {
			if !c.live(e.stored, now) {
				delete(c.m, x)
			}
		}
		if len(c.m) >= c.max {
			clear(c.m)
		}
	}
	c.m[k] = entry[V]{v: v, stored: now}
}

// Delete drops k.
func (c *Cache[K, V]) Delete(k K) {
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

// DeleteFunc drops every entry for which drop returns true (an event naming a record by another
// key than the cache's, such as an internal id when the cache is keyed by a credential hash).
// drop runs with the cache locked: it must not call the cache.
func (c *Cache[K, V]) DeleteFunc(drop func(K, V) bool) {
	c.mu.Lock()
	for k, e := range c.m {
		if drop(k, e.v) {
			delete(c.m, k)
		}
	}
	c.mu.Unlock()
}

// Clear drops every entry.
func (c *Cache[K, V]) Clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// Len returns the number of entries held, expired or not.
func (c *Cache[K, V]) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
