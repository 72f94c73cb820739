package token

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/keys"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/sqlite"
)

const testIssuer = "https://posgate.test"

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// flakyStore is a real store that can be switched off, to show what keeps working without it.
type flakyStore struct {
	store.Store
	down atomic.Bool
}

func (f *flakyStore) AddRevocation(ctx context.Context, r store.Revocation) error {
	if f.down.Load() {
		return store.ErrUnavailable
	}
	return f.Store.AddRevocation(ctx, r)
}

func (f *flakyStore) ListRevocationsSince(ctx context.Context, since, now time.Time) ([]store.Revocation, error) {
	if f.down.Load() {
		return nil, store.ErrUnavailable
	}
	return f.Store.ListRevocationsSince(ctx, since, now)
}

func (f *flakyStore) ListSigningKeys(ctx context.Context) ([]*store.SigningKey, error) {
	if f.down.Load() {
		return nil, store.ErrUnavailable
	}
	return f.Store.ListSigningKeys(ctx)
}

// env is one posgate replica's token machinery on a real store: keyring, issuer, verifier.
type env struct {
	path string // SQLite file ("" for PostgreSQL)
	clk  *clock.Fake
	bus  events.Bus
	st   *flakyStore
	kr   *keys.Keyring
	iss  Issuer
	v    *PosgateVerifier
}

var testMaster = []byte("0123456789abcdef0123456789abcdef")

const testMaxLifetime = 24 * time.Hour

func newEnv(t testing.TB, alg string) *env {
	t.Helper()
	return newReplica(t, filepath.Join(t.TempDir(), "posgate.db"), clock.NewFake(t0), events.NewLocal(), alg)
}

// newReplica opens its own connection to the SQLite database at path, as a second process would.
func newReplica(t testing.TB, path string, clk *clock.Fake, bus events.Bus, alg string) *env {
	t.Helper()
	raw, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	e := newReplicaOn(t, raw, clk, bus, alg)
	e.path = path
	return e
}

// newReplicaOn builds a replica on an open store and bus.
func newReplicaOn(t testing.TB, raw store.Store, clk *clock.Fake, bus events.Bus, alg string) *env {
	t.Helper()
	ctx := context.Background()
	st := &flakyStore{Store: raw}
	sealer, err := keys.NewSealer(testMaster)
	if err != nil {
		t.Fatal(err)
	}
	kr := keys.NewKeyring(st, sealer, clk, alg, 0, testMaxLifetime)
	if err := kr.Load(ctx); err != nil {
		t.Fatal(err)
	}
	e := &env{clk: clk, bus: bus, st: st, kr: kr, iss: NewIssuer(kr, clk, testIssuer)}
	e.v = NewVerifier(kr, st, bus, clk, testIssuer, nil)
	sctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	if err := e.v.Start(sctx); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) replica(t testing.TB) *env { return newReplica(t, e.path, e.clk, e.bus, keys.AlgEdDSA) }

func (e *env) issue(t testing.TB, c Claims, lifetime time.Duration) (string, *Claims) {
	t.Helper()
	raw, signed, err := e.iss.Issue(context.Background(), c, lifetime)
	if err != nil {
		t.Fatal(err)
	}
	return raw, signed
}

// sign builds a token from an arbitrary header and payload, signed with the active key, so tests
// can present well-signed tokens with exactly the defect under test.
func (e *env) sign(t testing.TB, header, payload string) string {
	t.Helper()
	s, err := e.kr.Active()
	if err != nil {
		t.Fatal(err)
	}
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	sig, err := s.Sign([]byte(input))
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func (e *env) activeKID(t testing.TB) string {
	s, err := e.kr.Active()
	if err != nil {
		t.Fatal(err)
	}
	return s.KID
}

// header returns a correct header for the active key, with fields overridden or removed (nil).
func (e *env) header(t testing.TB, override map[string]any) string {
	h := map[string]any{"alg": "EdDSA", "kid": e.activeKID(t), "typ": "at+jwt"}
	for k, v := range override {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	b, _ := json.Marshal(h)
	return string(b)
}

// payload returns valid claims (issued now, one hour) with fields overridden or removed (nil).
func (e *env) payload(override map[string]any) string {
	now := e.clk.Now().Unix()
	p := map[string]any{"iss": testIssuer, "sub": "cl_test", "aud": "api", "client_id": "cl_test",
		"scope": "read", "jti": "jti-1", "iat": now, "exp": now + 3600}
	for k, v := range override {
		if v == nil {
			delete(p, k)
		} else {
			p[k] = v
		}
	}
	b, _ := json.Marshal(p)
	return string(b)
}

// wantReason fails unless err is a *VerifyError with reason r.
func wantReason(t testing.TB, err error, r Reason) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v (%T), want a *VerifyError with reason %v", err, err, r)
	}
	if ve.Reason != r {
		t.Fatalf("reason = %v (%q), want %v", ve.Reason, ve.Detail, r)
	}
}
