package jackpot

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/token"
)

// readCounter counts the store reads of a client by API key hash.
type readCounter struct {
	store.Store
	mu    sync.Mutex
	reads int
}

func (c *readCounter) GetClientByIDHash(ctx context.Context, h []byte) (*store.Client, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.Store.GetClientByIDHash(ctx, h)
}

func (c *readCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// scopeIssuer signs nothing; it remembers the scope of the last token asked for.
type scopeIssuer struct {
	mu    sync.Mutex
	scope string
}

func (i *scopeIssuer) Issue(_ context.Context, c token.Claims, _ time.Duration) (string, *token.Claims, error) {
	i.mu.Lock()
	i.scope = c.Scope
	i.mu.Unlock()
	return "token", &c, nil
}

func (i *scopeIssuer) last() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.scope
}

// TestSessionClientCheckedInTheWrite: a jwt-bearer request reads its client from the store only
// when it has no usable cached copy; with one, the single-use write checks the client instead.
// A client disabled, re-keyed or changed in the store behind the cache's back (another replica's
// admin change whose notice has not arrived) is decided on the store's copy at once: refused when
// disabled, accepted with the new key, and given its new scopes.
func TestSessionClientCheckedInTheWrite(t *testing.T) {
	ctx := context.Background()
	st := &readCounter{Store: openSQLite(t)}
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	sealer := testSealer(t)
	iss := &scopeIssuer{}
	svc := &app.Services{Store: st, Clock: clk, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Sealer: sealer, Issuer: iss,
		Throttle: auth.NewThrottle(st, clk, auth.ThrottleLimits{Window: time.Minute, PerAddress: 1000, PerAddressIdent: 1000, PerIdentity: 1000, IdentityBackoff: time.Minute}, nil)}
	cfg, err := settingsFrom(config.Default().Jackpot)
	if err != nil {
		t.Fatal(err)
	}
	m := &Module{svc: svc, cfg: cfg, clients: newClientCache(clk, time.Hour, cacheMax), keys: newKeyCache(clk, sealer, time.Hour, cacheMax)}

	apiKey := secret.Generate(secret.PrefixClientID)
	oldKey, newKey := []byte("pg_as_"+strings.Repeat("o", 43)), []byte("pg_as_"+strings.Repeat("n", 43))
	c := &store.Client{ID: secret.NewID("cl_"), Name: "shop", ClientIDHash: secret.Hash(apiKey), ClientIDHint: "pg_ck_…",
		GrantTypes: []string{GrantJWTBearer}, Scopes: []string{"a"}, APIKey: true, CreatedAt: clk.Now(), UpdatedAt: clk.Now()}
	sealed, err := sealer.Seal(oldKey, AssertionKeyAD(c.ID, "ak_old"))
	if err != nil {
		t.Fatal(err)
	}
	c.AssertionKeys = []store.AssertionKey{{ID: "ak_old", Sealed: sealed, CreatedAt: clk.Now()}}
	if err := st.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}

	n := 0
	session := func(key []byte, nk string) (*tokenResponse, *oauthError) {
		t.Helper()
		n++
		body, _ := json.Marshal(map[string]string{"grant_type": GrantJWTBearer, "client_id": apiKey,
			"assertion": signRaw(key, hs256Header, fmt.Sprintf(`{"amount":1,"iat":%d,"notificationKey":%q}`, clk.Now().Unix(), nk))})
		r := httptest.NewRequest("POST", "/v2/token", strings.NewReader(string(body)))
		r.Header.Set("Content-Type", "application/json")
		return m.token(r)
	}
	wantOK := func(key []byte, nk string) {
		t.Helper()
		if _, oe := session(key, nk); oe != nil {
			t.Fatalf("%s: %d %s %s", nk, oe.status, oe.code, oe.desc)
		}
	}
	wantReads := func(want int) {
		t.Helper()
		if got := st.count(); got != want {
			t.Fatalf("after %d requests, %d client reads; want %d", n, got, want)
		}
	}

	wantOK(oldKey, "nk-1")
	wantReads(1)
	wantOK(oldKey, "nk-2")
	wantOK(oldKey, "nk-3")
	wantReads(1) // the cached copy, checked by the single-use write

	// Disabled behind the cache's back: refused at once, and the assertion burns nothing.
	c.Disabled, c.UpdatedAt = true, clk.Now()
	if err := st.UpdateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, oe := session(oldKey, "nk-4"); oe == nil || oe.code != "invalid_client" || !strings.Contains(oe.desc, "disabled") {
		t.Fatalf("disabled client: %+v", oe)
	}
	c.Disabled = false
	if err := st.UpdateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	wantOK(oldKey, "nk-4")

	// A new API signature, the old one ended: the cached copy does not know the new key, the
	// store's copy does; the old key is refused.
	sealedNew, err := sealer.Seal(newKey, AssertionKeyAD(c.ID, "ak_new"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddAssertionKey(ctx, c.ID, store.AssertionKey{ID: "ak_new", Sealed: sealedNew, CreatedAt: clk.Now()}, clk.Now()); err != nil {
		t.Fatal(err)
	}
	wantOK(newKey, "nk-5")
	if _, oe := session(oldKey, "nk-6"); oe == nil || oe.code != "invalid_grant" {
		t.Fatalf("ended key: %+v", oe)
	}

	// New scopes: every check the cached copy allows passes, the write finds the version moved,
	// and the token carries the store's scopes.
	wantOK(newKey, "nk-7")
	reads := st.count()
	c.Scopes = []string{"b"}
	if err := st.UpdateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	wantOK(newKey, "nk-8")
	if got := iss.last(); got != "b" {
		t.Fatalf("token scope %q after the client's scopes changed; want %q", got, "b")
	}
	wantReads(reads + 1)
}
