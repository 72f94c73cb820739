package keys

import (
	"context"
	"sync"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// memKeys is an in-memory store.SigningKeys with the conflict semantics the keyring relies on
// (one active, one next; rotation conditional on the expected active key). Tests also run the
// keyring against the real SQLite store (keyring_sqlite_test.go) when it is available.
type memKeys struct {
	mu   sync.Mutex
	keys []*store.SigningKey
	down bool // every call fails with store.ErrUnavailable
}

func (m *memKeys) setDown(d bool) { m.mu.Lock(); m.down = d; m.mu.Unlock() }

func cloneKey(k *store.SigningKey) *store.SigningKey {
	c := *k
	return &c
}

func (m *memKeys) ListSigningKeys(context.Context) ([]*store.SigningKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, store.ErrUnavailable
	}
	out := make([]*store.SigningKey, len(m.keys))
	for i, k := range m.keys {
		out[i] = cloneKey(k)
	}
	return out, nil
}

func (m *memKeys) CreateSigningKey(_ context.Context, k *store.SigningKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return store.ErrUnavailable
	}
	for _, o := range m.keys {
		if o.KID == k.KID || (k.State != store.KeyRetired && o.State == k.State) {
			return store.ErrConflict
		}
	}
	m.keys = append(m.keys, cloneKey(k))
	return nil
}

func (m *memKeys) RotateSigningKeys(_ context.Context, expectActive, next string, retiredAt, expiresAt time.Time, newNext *store.SigningKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return store.ErrUnavailable
	}
	var a, n *store.SigningKey
	for _, k := range m.keys {
		if k.State == store.KeyActive {
			a = k
		}
		if k.State == store.KeyNext {
			n = k
		}
	}
	if a == nil || a.KID != expectActive || n == nil || n.KID != next {
		return store.ErrConflict
	}
	a.State, a.RetiredAt, a.ExpiresAt = store.KeyRetired, &retiredAt, &expiresAt
	n.State, n.ActivateAt = store.KeyActive, &retiredAt
	if newNext != nil {
		m.keys = append(m.keys, cloneKey(newNext))
	}
	return nil
}

func (m *memKeys) DeleteSigningKeysExpiredBefore(_ context.Context, t time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return store.ErrUnavailable
	}
	kept := m.keys[:0]
	for _, k := range m.keys {
		if k.ExpiresAt == nil || !k.ExpiresAt.Before(t) {
			kept = append(kept, k)
		}
	}
	m.keys = kept
	return nil
}

var _ store.SigningKeys = (*memKeys)(nil)
