package jackpot

import (
	"bytes"
	"context"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/keys"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/ttlcache"
)

// clientCache remembers client records for a few seconds so the apikey authenticator (on every
// gateway call of an API-key route) and the session/m2m authenticators (which refuse tokens of a
// disabled client) cost a map lookup, not a store read. Only hits are cached: a key created a
// moment ago must not be refused for the TTL, and a guesser's misses are bounded by the throttle.
// A client disabled through the admin API is therefore refused at the latest TTL later.
type clientCache struct {
	byHash *ttlcache.Cache[[32]byte, *store.Client] // by SHA-256 of the API key; read-only snapshots
	byID   *ttlcache.Cache[string, *store.Client]   // by internal id
}

// newClientCache bounds the two indexes to max entries together.
func newClientCache(clk clock.Clock, ttl time.Duration, max int) *clientCache {
	return &clientCache{
		byHash: ttlcache.New[[32]byte, *store.Client](clk, ttl, max/2),
		byID:   ttlcache.New[string, *store.Client](clk, ttl, max/2),
	}
}

// byAPIKeyHash returns the client whose API key hashes to h (one indexed read on a miss).
func (c *clientCache) byAPIKeyHash(ctx context.Context, st store.Clients, h [32]byte) (*store.Client, error) {
	if cl, ok := c.byHash.Get(h); ok {
		return cl, nil
	}
	cl, err := st.GetClientByIDHash(ctx, h[:])
	if err != nil {
		return nil, err
	}
	c.put(cl)
	return cl, nil
}

// byClientID returns the client with internal id id.
func (c *clientCache) byClientID(ctx context.Context, st store.Clients, id string) (*store.Client, error) {
	if cl, ok := c.byID.Get(id); ok {
		return cl, nil
	}
	cl, err := st.GetClient(ctx, id)
	if err != nil {
		return nil, err
	}
	c.put(cl)
	return cl, nil
}

func (c *clientCache) put(cl *store.Client) {
	if h, ok := idHash(cl); ok {
		c.byHash.Put(h, cl)
	}
	c.byID.Put(cl.ID, cl)
}

func idHash(cl *store.Client) (h [32]byte, ok bool) {
	if len(cl.ClientIDHash) != len(h) {
		return h, false
	}
	copy(h[:], cl.ClientIDHash)
	return h, true
}

// forget drops a client so the next lookup reads the store (after an admin change on this replica).
func (c *clientCache) forget(cl *store.Client) {
	c.byID.Delete(cl.ID)
	if h, ok := idHash(cl); ok {
		c.byHash.Delete(h)
	}
}

// forgetByID drops every cached copy of client id ("" drops everything), when the admin API
// announces a change on the event bus.
func (c *clientCache) forgetByID(id string) {
	if id == "" {
		c.byHash.Clear()
		c.byID.Clear()
		return
	}
	c.byID.Delete(id)
	c.byHash.DeleteFunc(func(_ [32]byte, cl *store.Client) bool { return cl.ID == id })
}

// keyCache keeps unsealed API signatures for a short while so a burst of assertions from one
// client costs one AES-GCM open per key, not one per request. Entries are bound to the sealed blob
// they came from (a key id is never reused with other content, but comparing costs nothing).
// The cache never leaves this process and is never logged.
type keyCache struct {
	sealer keys.Sealer
	m      *ttlcache.Cache[string, cachedKey] // clientID + "\x00" + keyID
}

type cachedKey struct {
	sealed []byte
	key    []byte
}

func newKeyCache(clk clock.Clock, s keys.Sealer, ttl time.Duration, max int) *keyCache {
	return &keyCache{sealer: s, m: ttlcache.New[string, cachedKey](clk, ttl, max)}
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
		key, err := kc.open(cl.ID, k)
		if err != nil {
			return nil, err
		}
		out = append(out, key)
	}
	return out, nil
}

func (kc *keyCache) open(clientID string, k *store.AssertionKey) ([]byte, error) {
	id := clientID + "\x00" + k.ID
	if e, ok := kc.m.Get(id); ok && bytes.Equal(e.sealed, k.Sealed) {
		return e.key, nil
	}
	key, err := kc.sealer.Open(k.Sealed, AssertionKeyAD(clientID, k.ID))
	if err != nil {
		return nil, err
	}
	kc.m.Put(id, cachedKey{sealed: k.Sealed, key: key})
	return key, nil
}
