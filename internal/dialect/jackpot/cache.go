package jackpot

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/keys"
	"github.com/posgate/posgate/internal/store"
)

// clientCache remembers client records for a few seconds so the apikey authenticator (on every
// gateway call of an API-key route) and the session/m2m authenticators (which refuse tokens of a
// disabled client) cost a map lookup, not a store read. Only hits are cached: a key created a
// moment ago must not be refused for the TTL, and a guesser's misses are bounded by the throttle.
// A client disabled through the admin API is therefore refused at the latest TTL later.
type clientCache struct {
	clk clock.Clock
	ttl time.Duration
	max int

	mu     sync.RWMutex
	byHash map[[32]byte]cachedClient
	byID   map[string]cachedClient
}

type cachedClient struct {
	c       *store.Client // read-only snapshot
	expires time.Time
}

func newClientCache(clk clock.Clock, ttl time.Duration, max int) *clientCache {
	return &clientCache{clk: clk, ttl: ttl, max: max, byHash: map[[32]byte]cachedClient{}, byID: map[string]cachedClient{}}
}

// byAPIKeyHash returns the client whose API key hashes to h (one indexed read on a miss).
func (c *clientCache) byAPIKeyHash(ctx context.Context, st store.Clients, h [32]byte) (*store.Client, error) {
	now := c.clk.Now()
	if c.ttl > 0 {
		c.mu.RLock()
		e, ok := c.byHash[h]
		c.mu.RUnlock()
		if ok && now.Before(e.expires) {
			return e.c, nil
		}
	}
	cl, err := st.GetClientByIDHash(ctx, h[:])
	if err != nil {
		return nil, err
	}
	c.put(cl, now)
	return cl, nil
}

// byClientID returns the client with internal id id.
func (c *clientCache) byClientID(ctx context.Context, st store.Clients, id string) (*store.Client, error) {
	now := c.clk.Now()
	if c.ttl > 0 {
		c.mu.RLock()
		e, ok := c.byID[id]
		c.mu.RUnlock()
		if ok && now.Before(e.expires) {
			return e.c, nil
		}
	}
	cl, err := st.GetClient(ctx, id)
	if err != nil {
		return nil, err
	}
	c.put(cl, now)
	return cl, nil
}

func (c *clientCache) put(cl *store.Client, now time.Time) {
	if c.ttl <= 0 {
		return
	}
	e := cachedClient{c: cl, expires: now.Add(c.ttl)}
	var h [32]byte
	hashOK := len(cl.ClientIDHash) == len(h)
	copy(h[:], cl.ClientIDHash)
	c.mu.Lock()
	if len(c.byHash)+len(c.byID) >= c.max {
		c.evictLocked(now)
	}
	if hashOK {
		c.byHash[h] = e
	}
	c.byID[cl.ID] = e
	c.mu.Unlock()
}

// evictLocked drops expired entries, and everything if that was not enough: the cache is an
// optimisation, so a burst of distinct clients costs store reads, never unbounded memory.
func (c *clientCache) evictLocked(now time.Time) {
	for k, e := range c.byHash {
		if !now.Before(e.expires) {
			delete(c.byHash, k)
		}
	}
	for k, e := range c.byID {
		if !now.Before(e.expires) {
			delete(c.byID, k)
		}
	}
	if len(c.byHash)+len(c.byID) >= c.max {
		clear(c.byHash)
		clear(c.byID)
	}
}

// forget drops a client so the next lookup reads the store (after an admin change on this replica).
func (c *clientCache) forget(cl *store.Client) {
	c.mu.Lock()
	delete(c.byID, cl.ID)
	if len(cl.ClientIDHash) == 32 {
		var h [32]byte
		copy(h[:], cl.ClientIDHash)
		delete(c.byHash, h)
	}
	c.mu.Unlock()
}

// forgetByID drops every cached copy of client id ("" drops everything), when the admin API
// announces a change on the event bus.
func (c *clientCache) forgetByID(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id == "" {
		clear(c.byHash)
		clear(c.byID)
		return
	}
	delete(c.byID, id)
	for h, e := range c.byHash {
		if e.c.ID == id {
			delete(c.byHash, h)
		}
	}
}

// keyCache keeps unsealed API signatures for a short while so a burst of assertions from one
// client costs one AES-GCM open per key, not one per request. Entries are bound to the sealed blob
// they came from (a key id is never reused with other content, but comparing costs nothing).
// The cache never leaves this process and is never logged.
type keyCache struct {
	clk    clock.Clock
	sealer keys.Sealer
	ttl    time.Duration
	max    int

	mu sync.Mutex
	m  map[string]cachedKey // clientID + "\x00" + keyID
}

type cachedKey struct {
	sealed  []byte
	key     []byte
	expires time.Time
}

func newKeyCache(clk clock.Clock, s keys.Sealer, ttl time.Duration, max int) *keyCache {
	return &keyCache{clk: clk, sealer: s, ttl: ttl, max: max, m: map[string]cachedKey{}}
}

// AssertionKeyAD is the additional data an API signature is sealed with: it binds the blob to its
// client and key id, so a sealed key copied to another client's row does not open.
func AssertionKeyAD(clientID, keyID string) []byte {
	return []byte("assertion-key:" + clientID + ":" + keyID)
}

// unexpiredKeys returns the client's API signatures that still verify at now, newest first.
func (kc *keyCache) unexpiredKeys(cl *store.Client, now time.Time) ([][]byte, error) {
	out := make([][]byte, 0, len(cl.AssertionKeys))
	for i := range cl.AssertionKeys {
		k := &cl.AssertionKeys[i]
		if k.NotAfter != nil && !now.Before(*k.NotAfter) {
			continue
		}
		key, err := kc.open(cl.ID, k, now)
		if err != nil {
			return nil, err
		}
		out = append(out, key)
	}
	return out, nil
}

func (kc *keyCache) open(clientID string, k *store.AssertionKey, now time.Time) ([]byte, error) {
	id := clientID + "\x00" + k.ID
	if kc.ttl > 0 {
		kc.mu.Lock()
		e, ok := kc.m[id]
		kc.mu.Unlock()
		if ok && now.Before(e.expires) && bytes.Equal(e.sealed, k.Sealed) {
			return e.key, nil
		}
	}
	key, err := kc.sealer.Open(k.Sealed, AssertionKeyAD(clientID, k.ID))
	if err != nil {
		return nil, err
	}
	if kc.ttl > 0 {
		kc.mu.Lock()
		if len(kc.m) >= kc.max {
			for x, e := range kc.m {
				if !now.Before(e.expires) {
					delete(kc.m, x)
				}
			}
			if len(kc.m) >= kc.max {
				clear(kc.m)
			}
		}
		kc.m[id] = cachedKey{sealed: k.Sealed, key: key, expires: now.Add(kc.ttl)}
		kc.mu.Unlock()
	}
	return key, nil
}
