package chimpy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/posgate/posgate/client/chimpy"
	"github.com/posgate/posgate/client/tokensource"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
)

const audience = "https://api.chimpy.example"

// fakeClock is the client's clock: tests move it instead of sleeping.
type fakeClock struct{ ns atomic.Int64 }

func newClock(t time.Time) *fakeClock        { c := &fakeClock{}; c.ns.Store(t.UnixNano()); return c }
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// counter counts the token requests that reach the network, by grant type.
type counter struct {
	mu     sync.Mutex
	grants map[string]int
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/oauth/token") && r.Body != nil {
		data, _ := io.ReadAll(r.Body)
		r.Body.Close()
		var b struct {
			Grant string `json:"grant_type"`
		}
		_ = json.Unmarshal(data, &b)
		c.mu.Lock()
		c.grants[b.Grant]++
		c.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(data)))
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (c *counter) get(grant string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.grants[grant]
}

func (c *counter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.grants {
		n += v
	}
	return n
}

type env struct {
	inst     *servertest.Instance
	cfg      chimpy.Config
	clk      *fakeClock
	net      *counter
	userID   string
	upstream atomic.Int64
}

func newEnv(t *testing.T) *env { return newEnvTB(t) }

func newEnvTB(t testing.TB) *env {
	t.Helper()
	e := &env{clk: newClock(time.Now()), net: &counter{grants: map[string]int{}}}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.upstream.Add(1)
		w.Write([]byte(`{"rentals":[]}`))
	}))
	t.Cleanup(up.Close)
	e.inst = servertest.Start(t, servertest.Options{Configure: func(c *config.Config) {
		c.Upstreams = map[string]string{"pos": up.URL}
		c.Routes = []config.Route{{Path: "/api/v1/", Methods: []string{"GET", "POST"}, Auth: []string{"chimpy"},
			Scopes: []string{"rentals"}, Audience: audience, Upstream: "pos"}}
	}})
	st, c := e.inst.Admin(t, "POST", "/clients", map[string]any{"name": "rentals app", "grant_types": []string{"password", "refresh_token"},
		"scopes": []string{"rentals", "offline_access"}, "audiences": []string{audience}})
	if st != http.StatusCreated {
		t.Fatalf("create client: %d %v", st, c)
	}
	st, u := e.inst.Admin(t, "POST", "/users", map[string]any{"username": "ann@example.com", "password": "correct horse battery staple"})
	if st != http.StatusCreated {
		t.Fatalf("create user: %d %v", st, u)
	}
	e.userID = u["id"].(string)
	e.cfg = chimpy.Config{
		TokenURL: e.inst.URL + "/oauth/token", ClientID: c["client_id"].(string), ClientSecret: c["client_secret"].(string),
		Audience: audience, Scopes: []string{"offline_access", "rentals"},
		Username: "ann@example.com", Password: "correct horse battery staple",
		HTTPClient: &http.Client{Transport: e.net, Timeout: 30 * time.Second},
		Options:    tokensource.Options{Now: e.clk.Now},
	}
	return e
}

func (e *env) get(t *testing.T, c *http.Client) int {
	t.Helper()
	resp, err := c.Get(e.inst.URL + "/api/v1/rentals")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestRenewsEarlyAndRotates(t *testing.T) {
	e := newEnv(t)
	store := tokensource.FileStore{Path: filepath.Join(t.TempDir(), "token.json")}
	e.cfg.Persist = store.Save
	src := e.cfg.TokenSource(context.Background())

	t1, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	if t1.RefreshToken == "" || e.net.get("password") != 1 {
		t.Fatalf("sign-in: refresh token %q, %d password grants", t1.RefreshToken, e.net.get("password"))
	}
	for range 10 {
		if tok, _ := src.Token(); tok != t1 {
			t.Fatal("a cached token was not reused")
		}
	}
	if n := e.net.total(); n != 1 {
		t.Fatalf("cached calls reached the network: %d requests", n)
	}
	if st := e.get(t, src.Client(nil)); st != 200 {
		t.Fatalf("API call: %d", st)
	}

	// Half a minute before expiry (inside the early window, the token still valid): renewed.
	e.clk.Advance(t1.Expiry.Sub(e.clk.Now()) - 30*time.Second)
	t2, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	if t2.AccessToken == t1.AccessToken || t2.RefreshToken == t1.RefreshToken || e.net.get("refresh_token") != 1 {
		t.Fatalf("not renewed with a rotated refresh token (refreshes %d)", e.net.get("refresh_token"))
	}
	saved, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if saved.RefreshToken != t2.RefreshToken {
		t.Fatal("the rotated refresh token was not persisted")
	}
	st, err := os.Stat(store.Path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, %v", st.Mode().Perm(), err)
	}
}

func TestOneRefreshForConcurrentCallers(t *testing.T) {
	e := newEnv(t)
	src := e.cfg.TokenSource(context.Background())
	t1, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(t1.Expiry.Sub(e.clk.Now()) + time.Minute) // expired: every caller needs a new one
	var wg sync.WaitGroup
	toks := make([]*oauth2.Token, 100)
	errs := make([]error, 100)
	start := make(chan struct{})
	for i := range 100 {
		wg.Go(func() {
			<-start
			toks[i], errs[i] = src.Token()
		})
	}
	close(start)
	wg.Wait()
	for i := range 100 {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if toks[i].AccessToken != toks[0].AccessToken || toks[i].AccessToken == t1.AccessToken {
			t.Fatalf("caller %d got another token", i)
		}
	}
	if n := e.net.get("refresh_token"); n != 1 {
		t.Fatalf("%d refresh requests for 100 concurrent callers, want 1", n)
	}
}

func TestRestartWithPersistedRotatedToken(t *testing.T) {
	e := newEnv(t)
	store := tokensource.FileStore{Path: filepath.Join(t.TempDir(), "token.json")}
	e.cfg.Persist = store.Save
	first := e.cfg.TokenSource(context.Background())
	t1, err := first.Token()
	if err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(t1.Expiry.Sub(e.clk.Now()))
	t2, err := first.Token() // rotates: t1's refresh token is now spent
	if err != nil || t2.RefreshToken == t1.RefreshToken {
		t.Fatalf("rotation: %v", err)
	}

	// The process restarts from the file, without a password: only the refresh token can work.
	saved, err := store.Load()
	if err != nil || saved == nil {
		t.Fatalf("load: %v", err)
	}
	cfg := e.cfg
	cfg.Username, cfg.Password, cfg.Token = "", "", saved
	e.clk.Advance(2 * time.Hour)
	second := cfg.TokenSource(context.Background())
	t3, err := second.Token()
	if err != nil {
		t.Fatalf("restart with the persisted refresh token: %v", err)
	}
	if t3.RefreshToken == t2.RefreshToken || e.net.get("password") != 1 {
		t.Fatalf("restart did not refresh (password grants %d)", e.net.get("password"))
	}
	if st := e.get(t, second.Client(nil)); st != 200 {
		t.Fatalf("API call after restart: %d", st)
	}

	// What the hook prevents: restarting from the spent token revokes the session.
	stale := cfg
	stale.Token = &oauth2.Token{AccessToken: "x", RefreshToken: t1.RefreshToken, Expiry: e.clk.Now().Add(-time.Second)}
	_, err = stale.TokenSource(context.Background()).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || re.Response.StatusCode != 403 || !chimpy.Expired(err) {
		t.Fatalf("spent refresh token: %v", err)
	}
	if st := e.get(t, second.Client(nil)); st != 401 {
		t.Fatalf("after reuse the session's access token still works: %d", st)
	}
}

func TestPersistFailureKeepsTokenAside(t *testing.T) {
	e := newEnv(t)
	var fail atomic.Bool
	var persisted []*oauth2.Token
	var mu sync.Mutex
	e.cfg.Persist = func(_ context.Context, tok *oauth2.Token) error {
		if fail.Load() {
			return errors.New("disk full")
		}
		mu.Lock()
		persisted = append(persisted, tok)
		mu.Unlock()
		return nil
	}
	src := e.cfg.TokenSource(context.Background())
	t1, err := src.Token()
	if err != nil || len(persisted) != 1 || persisted[0] != t1 {
		t.Fatalf("first token not persisted before use: %v", err)
	}
	fail.Store(true)
	e.clk.Advance(t1.Expiry.Sub(e.clk.Now()) + time.Second)
	if _, err := src.Token(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("a token that could not be persisted was served: %v", err)
	}
	refreshes := e.net.get("refresh_token")
	fail.Store(false)
	e.clk.Advance(tokensource.DefaultMaxBackoff)
	t2, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	if e.net.get("refresh_token") != refreshes || len(persisted) != 2 || persisted[1] != t2 {
		t.Fatal("the kept token was not persisted and served without a new refresh")
	}
	if st := e.get(t, src.Client(nil)); st != 200 {
		t.Fatalf("API call: %d", st)
	}
}

func TestRevokedCredentialsBackOff(t *testing.T) {
	e := newEnv(t)
	e.cfg.Options.MaxBackoff = 8 * time.Second
	src := e.cfg.TokenSource(context.Background())
	t1, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := e.inst.Admin(t, "POST", "/users/"+e.userID+"/disable", nil); st != 200 {
		t.Fatalf("disable: %d", st)
	}
	e.clk.Advance(t1.Expiry.Sub(e.clk.Now()) + time.Second)
	_, err = src.Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || !chimpy.Expired(err) {
		t.Fatalf("revoked user: %v", err)
	}
	if !strings.Contains(err.Error(), "sign-in of \"ann@example.com\"") {
		t.Fatalf("error does not say what failed: %v", err)
	}
	calls := e.net.total() // the refresh and the password fallback
	for range 100 {
		if _, err2 := src.Token(); err2 != err {
			t.Fatalf("during back-off: %v", err2)
		}
	}
	if e.net.total() != calls {
		t.Fatalf("%d requests during the back-off", e.net.total()-calls)
	}
	// The back-off doubles and is capped: after many failures one MaxBackoff is always enough.
	// (A source with a refresh token only, so that each attempt is one cheap request.)
	cfg := e.cfg
	cfg.Username, cfg.Password, cfg.Token = "", "", t1
	src = cfg.TokenSource(context.Background())
	for i := range 8 {
		before := e.net.total()
		if _, err := src.Token(); !chimpy.Expired(err) {
			t.Fatalf("revoked refresh token: %v", err)
		}
		if got := e.net.total() - before; got != 1 {
			t.Fatalf("round %d: %d requests after the capped back-off, want 1", i, got)
		}
		if _, err := src.Token(); err == nil || e.net.total()-before != 1 {
			t.Fatal("retried inside the back-off")
		}
		e.clk.Advance(8 * time.Second)
	}
}

func TestClientSkewedClock(t *testing.T) {
	e := newEnv(t)
	e.clk.Advance(3 * time.Hour) // the client's clock is three hours fast
	src := e.cfg.TokenSource(context.Background())
	c := src.Client(nil)
	for range 3 {
		if st := e.get(t, c); st != 200 {
			t.Fatalf("API call: %d", st)
		}
	}
	if n := e.net.total(); n != 1 {
		t.Fatalf("a fast clock caused %d token requests, want 1 (expiry counts from expires_in)", n)
	}
}

func TestRetriesOnceOn401(t *testing.T) {
	e := newEnv(t)
	src := e.cfg.TokenSource(context.Background())
	c := src.Client(nil)
	t1, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	if st, b := e.inst.Admin(t, "POST", "/tokens/revoke", map[string]any{"token": t1.AccessToken}); st != 200 {
		t.Fatalf("revoke: %d %v", st, b)
	}
	before := e.upstream.Load()
	req, _ := http.NewRequest("POST", e.inst.URL+"/api/v1/rentals", strings.NewReader(`{"bike":1}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || e.net.get("refresh_token") != 1 || e.upstream.Load() != before+1 {
		t.Fatalf("status %d, refreshes %d", resp.StatusCode, e.net.get("refresh_token"))
	}
}
