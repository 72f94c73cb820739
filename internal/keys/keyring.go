package keys

import (
	"cmp"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/store"
)

// RetireGrace is added to a retired key's publication period (retiredAt + maxTokenLifetime). Other
// replicas keep signing with a key until they next Refresh (the server refreshes every
// RefreshInterval), so a token they mint just after a rotation elsewhere must stay verifiable for
// its full lifetime too.
const RetireGrace = 10 * time.Minute

// RefreshInterval is how often the server should call MaybeRotate (which also refreshes from the
// store). It must stay well below RetireGrace.
const RefreshInterval = time.Minute

// KeyInfo describes a key for the admin API. It never holds private material.
type KeyInfo struct {
	KID         string     `json:"kid"`
	Alg         string     `json:"alg"`
	State       string     `json:"state"`
	CreatedAt   time.Time  `json:"created_at"`
	ActivatedAt *time.Time `json:"activated_at,omitempty"`
	RetiredAt   *time.Time `json:"retired_at,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
}

// PublicKey is a key a token may be verified with, pinned to one algorithm.
type PublicKey struct {
	KID   string
	Alg   string
	State store.KeyState
	// ExpiresAt is when a retired key stops being accepted; zero for next and active keys.
	ExpiresAt time.Time
	key       crypto.PublicKey
}

// Verify reports whether sig is a valid signature of msg under this key with its pinned algorithm.
func (k *PublicKey) Verify(msg, sig []byte) bool { return verify(k.Alg, k.key, msg, sig) }

// Key returns the crypto public key (ed25519.PublicKey, *ecdsa.PublicKey or *rsa.PublicKey).
func (k *PublicKey) Key() crypto.PublicKey { return k.key }

// Signer is the active key: the one tokens are signed with.
type Signer struct {
	KID  string
	Alg  string
	priv crypto.Signer
}

// Sign returns the JWS signature of msg (for ES256 the fixed-width r||s form).
func (s *Signer) Sign(msg []byte) ([]byte, error) { return sign(s.Alg, s.priv, msg) }

// Keyring is posgate's set of token-signing keys.
//
// Keys move next → active → retired. The next key is published in the JWKS before it signs
// anything, so relying parties that cache the JWKS already know it when a rotation makes it active;
// the retired key stays published and accepted until every token it signed has expired
// (retiredAt + maxTokenLifetime + RetireGrace), then it is dropped. Private keys are stored sealed
// with the master key (additional data "signing-key:<kid>", so a sealed key moved to another row
// does not open). A kid is the key's RFC 7638 thumbprint.
//
// Reads (Lookup, Active, JWKS, List) take no lock: they load an immutable snapshot through an
// atomic pointer. Writers (Load, Refresh, Rotate, MaybeRotate) are serialised by a mutex and
// publish a new snapshot. Replicas share the keyring through the store; the store's conflict
// semantics (one active, one next; a rotation that expects the current active key) make
// concurrent writers on different replicas converge.
type Keyring struct {
	st          store.SigningKeys
	sealer      Sealer
	clk         clock.Clock
	alg         string
	rotateEvery time.Duration
	maxLifetime time.Duration

	mu   sync.Mutex // serialises writers
	snap atomic.Pointer[snapshot]
}

// NewKeyring returns a keyring that makes new keys with alg (AlgEdDSA, AlgES256 or AlgRS256;
// checked by Load), rotates automatically every rotateEvery (0: only when Rotate is called), and
// keeps a retired key published for maxTokenLifetime (+RetireGrace) after it stopped signing.
// maxTokenLifetime must cover the longest token lifetime plus any window in which an expired token
// is still accepted (chef's renewal window); the Issuer refuses longer lifetimes.
//
// Changing alg affects keys made from then on: the current next key (already published) still
// becomes active at the next rotation, and the first key of the new algorithm signs from the
// rotation after that. Rotate twice to switch at once.
func NewKeyring(st store.SigningKeys, s Sealer, clk clock.Clock, alg string, rotateEvery, maxTokenLifetime time.Duration) *Keyring {
	return &Keyring{st: st, sealer: s, clk: clk, alg: alg, rotateEvery: rotateEvery, maxLifetime: maxTokenLifetime}
}

// SetMaxTokenLifetime replaces the maxTokenLifetime given to NewKeyring, for a caller that learns
// it from what it builds on the keyring (the server asks its modules). Call it before Load.
func (k *Keyring) SetMaxTokenLifetime(d time.Duration) { k.maxLifetime = d }

// MaxTokenLifetime is the longest lifetime a token may be issued with.
func (k *Keyring) MaxTokenLifetime() time.Duration { return k.maxLifetime }

// ErrNotLoaded is returned by Active before Load succeeded.
var ErrNotLoaded = errors.New("keys: keyring not loaded")

// snapshot is one immutable view of the keyring.
type snapshot struct {
	active  *Signer
	byKID   map[string]*PublicKey
	ordered []*PublicKey // active, next, retired newest first
	jwks    []byte       // all of ordered
	// jwksUntil is the earliest ExpiresAt among the retired keys in jwks (zero: none); from then on
	// jwks must be rebuilt without the expired keys.
	jwksUntil time.Time
	list      []KeyInfo
}

// Load reads the keyring from the store, first creating an active and a next key if there are
// none. Two replicas starting on an empty store at once converge on the same keys: the store
// refuses a second active (or next) key with ErrConflict, and the loser reads the winner's.
func (k *Keyring) Load(ctx context.Context) error {
	if !ValidAlg(k.alg) {
		return fmt.Errorf("keys: unsupported algorithm %q (want %s, %s or %s)", k.alg, AlgEdDSA, AlgES256, AlgRS256)
	}
	if k.maxLifetime <= 0 {
		return errors.New("keys: the maximum token lifetime must be positive")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	_, err := k.ensureLocked(ctx)
	return err
}

// ensureLocked makes sure an active and a next key exist, then publishes a fresh snapshot.
func (k *Keyring) ensureLocked(ctx context.Context) (*snapshot, error) {
	for range 5 {
		all, err := k.st.ListSigningKeys(ctx)
		if err != nil {
			return nil, fmt.Errorf("keys: list signing keys: %w", err)
		}
		now := k.clk.Now()
		active, next, _ := classify(all, now)
		switch {
		case active == nil:
			err = k.createLocked(ctx, store.KeyActive, now)
		case next == nil:
			err = k.createLocked(ctx, store.KeyNext, now)
		default:
			return k.publishLocked(all, now)
		}
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return nil, err
		}
		// Created, or another replica created one first: read again.
	}
	return nil, errors.New("keys: the keyring did not settle after 5 attempts (concurrent writers, or a store that does not refuse a second active/next key)")
}

func (k *Keyring) createLocked(ctx context.Context, state store.KeyState, now time.Time) error {
	sk, err := k.newKey(state, now)
	if err != nil {
		return err
	}
	if err := k.st.CreateSigningKey(ctx, sk); err != nil {
		return fmt.Errorf("keys: store %s key: %w", state, err)
	}
	return nil
}

// newKey generates a key for the keyring's algorithm, sealed and ready to store.
func (k *Keyring) newKey(state store.KeyState, now time.Time) (*store.SigningKey, error) {
	priv, err := generateKey(k.alg)
	if err != nil {
		return nil, err
	}
	kid, err := thumbprint(priv.Public())
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	sealed, err := k.sealer.Seal(privDER, keyAD(kid))
	clear(privDER)
	if err != nil {
		return nil, err
	}
	sk := &store.SigningKey{KID: kid, Alg: k.alg, State: state, Private: sealed, Public: pubDER, CreatedAt: now}
	if state == store.KeyActive {
		sk.ActivateAt = &now
	}
	return sk, nil
}

func keyAD(kid string) []byte { return []byte("signing-key:" + kid) }

// classify picks the active and next keys among the unexpired ones. Should a store ever hold two
// active (or next) keys, every replica picks the same one: the most recently activated (created),
// then the greatest kid.
func classify(all []*store.SigningKey, now time.Time) (active, next *store.SigningKey, live []*store.SigningKey) {
	for _, sk := range all {
		if sk.ExpiresAt != nil && !now.Before(*sk.ExpiresAt) {
			continue
		}
		live = append(live, sk)
		switch sk.State {
		case store.KeyActive:
			if active == nil || later(activation(sk, nil), sk.KID, activation(active, nil), active.KID) {
				active = sk
			}
		case store.KeyNext:
			if next == nil || later(sk.CreatedAt, sk.KID, next.CreatedAt, next.KID) {
				next = sk
			}
		}
	}
	return active, next, live
}

func later(t1 time.Time, kid1 string, t2 time.Time, kid2 string) bool {
	if !t1.Equal(t2) {
		return t1.After(t2)
	}
	return kid1 > kid2
}

// activation is when an active key started signing: its ActivateAt, or (for a store that did not
// record it) the moment the key before it was retired, or its creation.
func activation(active *store.SigningKey, all []*store.SigningKey) time.Time {
	if active.ActivateAt != nil {
		return *active.ActivateAt
	}
	var t time.Time
	for _, sk := range all {
		if sk.State == store.KeyRetired && sk.RetiredAt != nil && sk.RetiredAt.After(t) {
			t = *sk.RetiredAt
		}
	}
	if t.IsZero() {
		return active.CreatedAt
	}
	return t
}

// publishLocked builds a snapshot from the stored keys and makes it current.
func (k *Keyring) publishLocked(all []*store.SigningKey, now time.Time) (*snapshot, error) {
	active, next, live := classify(all, now)
	if active == nil {
		return nil, errors.New("keys: the store holds no active signing key (run Load)")
	}
	s := &snapshot{byKID: make(map[string]*PublicKey, len(live))}
	for _, sk := range live {
		pub, err := parsePublic(sk.Alg, sk.Public)
		if err != nil {
			return nil, fmt.Errorf("keys: signing key %s: %w", sk.KID, err)
		}
		if kid, err := thumbprint(pub); err != nil || kid != sk.KID {
			return nil, fmt.Errorf("keys: signing key %s: kid is not the key's thumbprint", sk.KID)
		}
		state := sk.State
		if sk.State == store.KeyActive && sk != active {
			state = store.KeyNext // a second active key (see classify): published, not signing
		}
		pk := &PublicKey{KID: sk.KID, Alg: sk.Alg, State: state, key: pub}
		if state == store.KeyRetired {
			if sk.ExpiresAt == nil {
				return nil, fmt.Errorf("keys: retired signing key %s has no expiry", sk.KID)
			}
			pk.ExpiresAt = *sk.ExpiresAt
		}
		if sk == active || sk == next {
			// Open the next key too: a wrong master key or a damaged row shows now, not at rotation.
			priv, err := k.openPrivate(sk, pub)
			if err != nil {
				return nil, err
			}
			if sk == active {
				s.active = &Signer{KID: sk.KID, Alg: sk.Alg, priv: priv}
			}
		}
		s.byKID[sk.KID] = pk
		s.ordered = append(s.ordered, pk)
		info := KeyInfo{KID: sk.KID, Alg: sk.Alg, State: string(state), CreatedAt: sk.CreatedAt,
			ActivatedAt: sk.ActivateAt, RetiredAt: sk.RetiredAt, ExpiresAt: sk.ExpiresAt}
		s.list = append(s.list, info)
	}
	rank := map[store.KeyState]int{store.KeyActive: 0, store.KeyNext: 1, store.KeyRetired: 2}
	order := func(a, b *PublicKey) int {
		if c := cmp.Compare(rank[a.State], rank[b.State]); c != 0 {
			return c
		}
		if a.KID == active.KID { // the signing key first among equals
			return -1
		}
		if b.KID == active.KID {
			return 1
		}
		return b.ExpiresAt.Compare(a.ExpiresAt) // retired: newest first
	}
	slices.SortStableFunc(s.ordered, order)
	slices.SortStableFunc(s.list, func(a, b KeyInfo) int { return order(s.byKID[a.KID], s.byKID[b.KID]) })
	for _, pk := range s.ordered {
		if !pk.ExpiresAt.IsZero() && (s.jwksUntil.IsZero() || pk.ExpiresAt.Before(s.jwksUntil)) {
			s.jwksUntil = pk.ExpiresAt
		}
	}
	jwks, err := buildJWKS(s.ordered, time.Time{})
	if err != nil {
		return nil, err
	}
	s.jwks = jwks
	k.snap.Store(s)
	return s, nil
}

func (k *Keyring) openPrivate(sk *store.SigningKey, pub crypto.PublicKey) (crypto.Signer, error) {
	der, err := k.sealer.Open(sk.Private, keyAD(sk.KID))
	if err != nil {
		return nil, fmt.Errorf("keys: open private signing key %s (is this the deployment's master key?): %w", sk.KID, err)
	}
	defer clear(der)
	priv, err := parsePrivate(der, pub)
	if err != nil {
		return nil, fmt.Errorf("keys: private signing key %s: %w", sk.KID, err)
	}
	return priv, nil
}

// buildJWKS renders keys as an RFC 7517 JWK Set, leaving out retired keys expired at now (zero
// now: keep all).
func buildJWKS(keys []*PublicKey, now time.Time) ([]byte, error) {
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	for _, pk := range keys {
		if !now.IsZero() && !pk.ExpiresAt.IsZero() && !now.Before(pk.ExpiresAt) {
			continue
		}
		j, err := publicJWK(pk.key)
		if err != nil {
			return nil, err
		}
		j.Kid, j.Alg, j.Use = pk.KID, pk.Alg, "sig"
		set.Keys = append(set.Keys, j)
	}
	return json.Marshal(set)
}

// Refresh re-reads the keyring from the store (another replica may have rotated). It creates
// nothing.
func (k *Keyring) Refresh(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	all, err := k.st.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("keys: list signing keys: %w", err)
	}
	_, err = k.publishLocked(all, k.clk.Now())
	return err
}

// Rotate makes the next key active, retires the active key and makes a new next key. If another
// replica rotates at the same moment, one rotation happens and both callers see its result.
func (k *Keyring) Rotate(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.rotateLocked(ctx)
}

func (k *Keyring) rotateLocked(ctx context.Context) error {
	if _, err := k.ensureLocked(ctx); err != nil { // also reads the current keys
		return err
	}
	all, err := k.st.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("keys: list signing keys: %w", err)
	}
	now := k.clk.Now()
	active, next, _ := classify(all, now)
	if active == nil || next == nil {
		return errors.New("keys: keyring changed during rotation; try again")
	}
	newNext, err := k.newKey(store.KeyNext, now)
	if err != nil {
		return err
	}
	expires := now.Add(k.maxLifetime + RetireGrace)
	err = k.st.RotateSigningKeys(ctx, active.KID, next.KID, now, expires, newNext)
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("keys: rotate: %w", err)
	}
	// Rotated, or another replica rotated first (ErrConflict): either way read the result.
	all, err = k.st.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("keys: list signing keys: %w", err)
	}
	_, err = k.publishLocked(all, k.clk.Now())
	return err
}

// MaybeRotate refreshes the keyring from the store, rotates when the active key has been signing
// for rotateEvery or longer, and deletes keys whose publication period is over. The server calls
// it every RefreshInterval; it reports whether this call rotated.
func (k *Keyring) MaybeRotate(ctx context.Context) (rotated bool, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	all, err := k.st.ListSigningKeys(ctx)
	if err != nil {
		return false, fmt.Errorf("keys: list signing keys: %w", err)
	}
	now := k.clk.Now()
	active, _, _ := classify(all, now)
	if active == nil {
		if _, err := k.ensureLocked(ctx); err != nil {
			return false, err
		}
	} else if _, err := k.publishLocked(all, now); err != nil {
		return false, err
	}
	if active != nil && k.rotateEvery > 0 && !now.Before(activation(active, all).Add(k.rotateEvery)) {
		if err := k.rotateLocked(ctx); err != nil {
			return false, err
		}
		rotated = true
	}
	if err := k.st.DeleteSigningKeysExpiredBefore(ctx, now); err != nil {
		return rotated, fmt.Errorf("keys: delete expired signing keys: %w", err)
	}
	return rotated, nil
}

// Run calls MaybeRotate every interval until ctx ends, reporting failures to onErr (may be nil).
// A failure (the store down) leaves the current keys in use; the next tick tries again.
func (k *Keyring) Run(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := k.MaybeRotate(ctx); err != nil && onErr != nil && ctx.Err() == nil {
				onErr(err)
			}
		}
	}
}

// Active returns the key to sign with.
func (k *Keyring) Active() (*Signer, error) {
	s := k.snap.Load()
	if s == nil {
		return nil, ErrNotLoaded
	}
	return s.active, nil
}

// Lookup returns the key a token names in its kid, if the keyring publishes it now: the next and
// active keys, and retired keys until their ExpiresAt. It takes no lock.
func (k *Keyring) Lookup(kid string) (*PublicKey, bool) {
	s := k.snap.Load()
	if s == nil {
		return nil, false
	}
	pk, ok := s.byKID[kid]
	if !ok {
		return nil, false
	}
	if !pk.ExpiresAt.IsZero() && !k.clk.Now().Before(pk.ExpiresAt) {
		return nil, false
	}
	return pk, true
}

// JWKS returns the RFC 7517 JWK Set of the published keys — active, next and retired keys still
// needed — as JSON, each with kid, alg and use "sig". Before Load it is an empty set.
func (k *Keyring) JWKS() []byte {
	s := k.snap.Load()
	if s == nil {
		return []byte(`{"keys":[]}`)
	}
	if !s.jwksUntil.IsZero() {
		if now := k.clk.Now(); !now.Before(s.jwksUntil) {
			// A retired key expired since the last refresh: leave it out.
			if b, err := buildJWKS(s.ordered, now); err == nil {
				return b
			}
		}
	}
	return slices.Clone(s.jwks)
}

// List describes the published keys for the admin API (active, next, retired newest first).
func (k *Keyring) List() []KeyInfo {
	s := k.snap.Load()
	if s == nil {
		return nil
	}
	now := k.clk.Now()
	out := make([]KeyInfo, 0, len(s.list))
	for _, ki := range s.list {
		if ki.ExpiresAt != nil && !now.Before(*ki.ExpiresAt) {
			continue
		}
		out = append(out, ki)
	}
	return out
}
