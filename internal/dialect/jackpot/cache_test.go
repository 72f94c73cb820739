package jackpot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/keys"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/sqlite"
)

func openSQLite(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "jackpot.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func testSealer(t *testing.T) keys.Sealer {
	t.Helper()
	s, err := keys.NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestClientCache(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	apiKey := secret.Generate(secret.PrefixClientID)
	c := &store.Client{ID: secret.NewID("cl_"), Name: "c", ClientIDHash: secret.Hash(apiKey), ClientIDHint: "pg_ck_…",
		GrantTypes: []string{GrantClientCredentials}, APIKey: true, CreatedAt: clk.Now(), UpdatedAt: clk.Now()}
	if err := st.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	cc := newClientCache(clk, 3*time.Second, 100)
	h := sha256.Sum256([]byte(apiKey))
	got, err := cc.byAPIKeyHash(ctx, st, h)
	if err != nil || got.ID != c.ID || got.Disabled {
		t.Fatalf("%+v %v", got, err)
	}
	// Disabled in the store: the cache answers from memory until the TTL ends, then reads again.
	c.Disabled = true
	if err := st.UpdateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2999 * time.Millisecond)
	if got, _ := cc.byAPIKeyHash(ctx, st, h); got.Disabled {
		t.Fatal("cache was not used within the TTL")
	}
	if got, _ := cc.byClientID(ctx, st, c.ID); got.Disabled {
		t.Fatal("id cache was not used within the TTL")
	}
	clk.Advance(time.Millisecond)
	if got, _ := cc.byAPIKeyHash(ctx, st, h); !got.Disabled {
		t.Fatal("cache outlived its TTL")
	}
	// Misses are not cached: a key created after a miss works at once.
	k2 := secret.Generate(secret.PrefixClientID)
	h2 := sha256.Sum256([]byte(k2))
	if _, err := cc.byAPIKeyHash(ctx, st, h2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown key: %v", err)
	}
	c2 := &store.Client{ID: secret.NewID("cl_"), Name: "c2", ClientIDHash: h2[:], ClientIDHint: "pg_ck_…",
		GrantTypes: []string{GrantClientCredentials}, APIKey: true, CreatedAt: clk.Now(), UpdatedAt: clk.Now()}
	if err := st.CreateClient(ctx, c2); err != nil {
		t.Fatal(err)
	}
	if got, err := cc.byAPIKeyHash(ctx, st, h2); err != nil || got.ID != c2.ID {
		t.Fatalf("new key: %+v %v", got, err)
	}
	// A change announced on the bus drops the cached copies at once (both indexes).
	c.Disabled = false
	if err := st.UpdateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got, _ := cc.byAPIKeyHash(ctx, st, h); !got.Disabled {
		t.Fatal("expected the cached (disabled) copy before the notice")
	}
	cc.forgetByID(c.ID)
	if got, _ := cc.byAPIKeyHash(ctx, st, h); got.Disabled {
		t.Fatal("notice did not drop the API-key entry")
	}
	cc.forgetByID("")
	if cc.byHash.Len()+cc.byID.Len() != 0 {
		t.Fatal("an unreadable notice must drop everything")
	}
	// Bounded: many clients never grow the maps past max.
	small := newClientCache(clk, time.Hour, 10)
	for i := range 50 {
		small.put(&store.Client{ID: secret.NewID("cl_"), ClientIDHash: secret.Hash(string(rune(i)))})
		if n := small.byHash.Len() + small.byID.Len(); n > 10 {
			t.Fatalf("cache holds %d entries, max 10", n)
		}
	}
}

func TestKeyCache(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	s := testSealer(t)
	kc := newKeyCache(clk, s, time.Minute, 100)
	now := clk.Now()
	k1, plain1, err := NewAssertionKey(s, "cl_a", now)
	if err != nil {
		t.Fatal(err)
	}
	k2, plain2, _ := NewAssertionKey(s, "cl_a", now)
	past := now.Add(-time.Second)
	future := now.Add(time.Hour)
	expired := k1
	expired.NotAfter = &past
	overlapping := k1
	overlapping.NotAfter = &future

	cl := &store.Client{ID: "cl_a", AssertionKeys: []store.AssertionKey{k2, overlapping}}
	got, err := kc.unexpiredKeys(cl, now)
	if err != nil || len(got) != 2 || string(got[0]) != plain2 || string(got[1]) != plain1 {
		t.Fatalf("keys %q %v", got, err)
	}
	cl.AssertionKeys = []store.AssertionKey{k2, expired}
	got, _ = kc.unexpiredKeys(cl, now)
	if len(got) != 1 || string(got[0]) != plain2 {
		t.Fatalf("an expired key is still offered: %q", got)
	}
	// A sealed key copied onto another client does not open there (the additional data binds it).
	other := &store.Client{ID: "cl_b", AssertionKeys: []store.AssertionKey{k2}}
	if _, err := kc.unexpiredKeys(other, now); err == nil {
		t.Fatal("a key sealed for cl_a opened for cl_b")
	}
	// Cached by client and key id, but bound to the blob: a different blob is opened afresh.
	k3, plain3, _ := NewAssertionKey(s, "cl_a", now)
	k3.ID = k2.ID
	k3.Sealed, _ = s.Seal([]byte(plain3), AssertionKeyAD("cl_a", k2.ID))
	cl.AssertionKeys = []store.AssertionKey{k3}
	if got, _ := kc.unexpiredKeys(cl, now); len(got) != 1 || string(got[0]) != plain3 {
		t.Fatalf("stale cached key served for a new blob: %q", got)
	}
	if len(plain1) < 32 || plain1[:6] != "pg_as_" {
		t.Fatalf("API signature %q", plain1)
	}
}

func TestOAuthErrorWriter(t *testing.T) {
	for _, tc := range []struct {
		oe        *oauthError
		status    int
		challenge bool
		retry     string
	}{
		{invalidClient("unknown client"), 401, true, ""},
		{invalidGrant("iat is more than 300 s in the past"), 400, false, ""},
		{badRequest("grant_type is missing"), 400, false, ""},
		{unavailable(), 503, false, "5"},
		{throttled(nil), 429, false, "1"},
		{serverError(), 500, false, ""},
	} {
		w := httptest.NewRecorder()
		writeOAuthError(w, tc.oe)
		var body map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body) != 2 || body["error"] != tc.oe.code || body["error_description"] != tc.oe.desc {
			t.Errorf("%s: body %s", tc.oe.code, w.Body.String())
		}
		if w.Code != tc.status || (w.Header().Get("WWW-Authenticate") != "") != tc.challenge ||
			w.Header().Get("Retry-After") != tc.retry || w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %v", tc.oe.code, w.Code, w.Header())
		}
	}
}
