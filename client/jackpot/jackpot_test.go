package jackpot_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/posgate/posgate/client/jackpot"
	"github.com/posgate/posgate/client/tokensource"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
)

type env struct {
	inst     *servertest.Instance
	cfg      jackpot.Config
	clientID string
	tokens   atomic.Int64 // requests to /v2/token
	upstream atomic.Int64
	now      atomic.Int64 // the client's clock, unix nanoseconds
}

func (e *env) clock() time.Time        { return time.Unix(0, e.now.Load()) }
func (e *env) advance(d time.Duration) { e.now.Add(int64(d)) }

type countingTransport struct{ e *env }

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/v2/token" {
		c.e.tokens.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{}
	e.now.Store(time.Now().UnixNano())
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.upstream.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(up.Close)
	e.inst = servertest.Start(t, servertest.Options{Configure: routes(up.URL)})
	st, c := e.inst.Admin(t, "POST", "/clients", map[string]any{"name": "shop-42",
		"grant_types": []string{jackpot.GrantJWTBearer, "client_credentials"}, "scopes": []string{}, "audiences": []string{},
		"apikey": true, "assertion_secret": true})
	if st != http.StatusCreated {
		t.Fatalf("create client: %d %v", st, c)
	}
	e.clientID = c["id"].(string)
	e.cfg = jackpot.Config{
		BaseURL: e.inst.URL, APIKey: c["client_id"].(string), ClientSecret: c["client_secret"].(string),
		APISignature: []byte(c["assertion_secret"].(string)),
		HTTPClient:   &http.Client{Transport: countingTransport{e}, Timeout: 30 * time.Second},
		Options:      tokensource.Options{Now: e.clock},
	}
	return e
}

func routes(upstream string) func(*config.Config) {
	return func(c *config.Config) {
		c.Upstreams = map[string]string{"pos": upstream}
		c.Routes = []config.Route{
			{Path: "/v2/stores", Methods: []string{"GET"}, Auth: []string{"jackpot.apikey"}, Upstream: "pos"},
			{Path: "/v2/stores/{store}/offers/{offer}/reserve-voucher-by-price", Methods: []string{"POST"},
				Auth: []string{"jackpot.session"}, Consume: true, MaxAmountField: "price", Upstream: "pos"},
			{Path: "/v2/voucher/{id}/confirm", Methods: []string{"PUT"}, Auth: []string{"jackpot.m2m"}, Upstream: "pos"},
		}
	}
}

func reservation(t *testing.T, base string, price string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/v2/stores/s1/offers/o1/reserve-voucher-by-price", strings.NewReader(`{"price":`+price+`}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

// status is the answer's status, or -1 for a transport error.
func status(resp *http.Response, err error) int {
	if err != nil {
		return -1
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestAPIKey(t *testing.T) {
	e := newEnv(t)
	c := &http.Client{Transport: &jackpot.APIKeyTransport{Key: e.cfg.APIKey}}
	if st := status(c.Get(e.inst.URL + "/v2/stores")); st != 200 {
		t.Fatalf("with the API key: %d", st)
	}
	bad := &http.Client{Transport: &jackpot.APIKeyTransport{Key: "pg_ck_wrong"}}
	if st := status(bad.Get(e.inst.URL + "/v2/stores")); st != 401 {
		t.Fatalf("with a wrong key: %d", st)
	}
}

func TestSessionIsSpentByOneReservation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s, err := e.cfg.NewSession(ctx, jackpot.SessionRequest{Amount: 25, UserID: "cashier-7"})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.NotificationKey) != 32 || s.Token.Expiry.IsZero() {
		t.Fatalf("session %+v", s)
	}
	// Above the amount: refused by the server, the session stays open.
	if st := status(s.Reserve(reservation(t, e.inst.URL, "30"))); st != 403 || s.Spent() {
		t.Fatalf("over the amount: %d, spent %v", st, s.Spent())
	}
	if st := status(s.Reserve(reservation(t, e.inst.URL, "20"))); st != 200 || !s.Spent() {
		t.Fatalf("reservation: %d", st)
	}
	before := e.upstream.Load()
	if _, err := s.Reserve(reservation(t, e.inst.URL, "20")); !errors.Is(err, jackpot.ErrSessionSpent) {
		t.Fatalf("second reservation: %v", err)
	}
	if _, err := s.Do(reservation(t, e.inst.URL, "20")); !errors.Is(err, jackpot.ErrSessionSpent) {
		t.Fatalf("Do after the reservation: %v", err)
	}
	// The server agrees: the token is spent there too.
	req := reservation(t, e.inst.URL, "20")
	s.Token.SetAuthHeader(req)
	if st := status(http.DefaultClient.Do(req)); st != 401 || e.upstream.Load() != before {
		t.Fatalf("spent token on the server: %d", st)
	}

	// A new reservation is a new session with its own notificationKey.
	s2, err := e.cfg.NewSession(ctx, jackpot.SessionRequest{Amount: 25})
	if err != nil || s2.NotificationKey == s.NotificationKey {
		t.Fatalf("second session: %v", err)
	}
	// A notificationKey is single use: the caller's own key works once.
	if _, err := e.cfg.NewSession(ctx, jackpot.SessionRequest{Amount: 5, NotificationKey: s.NotificationKey}); tokensource.ErrorCode(err) != "invalid_grant" {
		t.Fatalf("reused notificationKey: %v", err)
	}
}

func TestConcurrentReserveSendsOne(t *testing.T) {
	e := newEnv(t)
	s, err := e.cfg.NewSession(context.Background(), jackpot.SessionRequest{Amount: 25})
	if err != nil {
		t.Fatal(err)
	}
	var ok, spent atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			resp, err := s.Reserve(reservation(t, e.inst.URL, "10"))
			switch {
			case errors.Is(err, jackpot.ErrSessionSpent):
				spent.Add(1)
			case err == nil:
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || spent.Load() != 19 || e.upstream.Load() != 1 {
		t.Fatalf("%d reservations, %d refused locally, %d reached the upstream", ok.Load(), spent.Load(), e.upstream.Load())
	}
}

func TestSessionClockSkew(t *testing.T) {
	for _, skew := range []time.Duration{5 * time.Minute, -10 * time.Minute} {
		e := newEnv(t)
		e.advance(skew)
		if _, err := e.cfg.NewSession(context.Background(), jackpot.SessionRequest{Amount: 1}); tokensource.ErrorCode(err) != "invalid_grant" {
			t.Fatalf("skew %v without correction: %v", skew, err)
		}
		e.cfg.Skew = new(tokensource.Skew)
		n := e.tokens.Load()
		if _, err := e.cfg.NewSession(context.Background(), jackpot.SessionRequest{Amount: 1}); err != nil {
			t.Fatalf("skew %v: %v", skew, err)
		}
		if e.tokens.Load()-n != 2 {
			t.Fatalf("skew %v: %d token requests, want 2 (refused, then corrected)", skew, e.tokens.Load()-n)
		}
		n = e.tokens.Load()
		if _, err := e.cfg.NewSession(context.Background(), jackpot.SessionRequest{Amount: 1}); err != nil || e.tokens.Load()-n != 1 {
			t.Fatalf("skew %v: the correction was not kept: %v", skew, err)
		}
	}
}

func TestAssertionSignatureRotation(t *testing.T) {
	e := newEnv(t)
	st, r := e.inst.Admin(t, "POST", "/clients/"+e.clientID+"/rotate-assertion-secret", nil)
	if st != 200 {
		t.Fatalf("rotate: %d %v", st, r)
	}
	old := e.cfg.APISignature
	e.cfg.APISignature = []byte(r["assertion_secret"].(string))
	if _, err := e.cfg.NewSession(context.Background(), jackpot.SessionRequest{Amount: 3}); err != nil {
		t.Fatalf("new signature: %v", err)
	}
	e.cfg.APISignature = old // still inside the overlap window
	if _, err := e.cfg.NewSession(context.Background(), jackpot.SessionRequest{Amount: 3}); err != nil {
		t.Fatalf("previous signature during the overlap: %v", err)
	}
	// The assertion is what the vendor documents: HS256 over amount, iat, notificationKey.
	a, key, err := e.cfg.Assertion(jackpot.SessionRequest{Amount: 12.5, UserID: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(a, claims, func(*jwt.Token) (any, error) { return old, nil }, jwt.WithValidMethods([]string{"HS256"})); err != nil {
		t.Fatal(err)
	}
	if claims["amount"] != 12.5 || claims["notificationKey"] != key || claims["userId"] != "u1" || claims["iat"].(float64) != float64(e.clock().Unix()) {
		t.Fatalf("claims %v", claims)
	}
}

func TestM2M(t *testing.T) {
	e := newEnv(t)
	src := e.cfg.M2M(context.Background())
	c := tokensource.Client(src, nil)
	var wg sync.WaitGroup
	var fails atomic.Int64
	for range 100 {
		wg.Go(func() {
			req, _ := http.NewRequest("PUT", e.inst.URL+"/v2/voucher/v1/confirm", nil)
			resp, err := c.Do(req)
			if err != nil || resp.StatusCode != 200 {
				fails.Add(1)
			}
			if err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if fails.Load() != 0 || e.tokens.Load() != 1 {
		t.Fatalf("%d failures, %d token requests for 100 concurrent calls (want 0, 1)", fails.Load(), e.tokens.Load())
	}
	// Renewed before it expires, not after.
	tok, _ := src.Token()
	e.advance(tok.Expiry.Sub(e.clock()) - 30*time.Second)
	tok2, err := src.Token()
	if err != nil || tok2.AccessToken == tok.AccessToken || e.tokens.Load() != 2 {
		t.Fatalf("early renewal: %v, %d requests", err, e.tokens.Load())
	}

	// A disabled client: a clear error, then back-off instead of a request per call.
	if st, _ := e.inst.Admin(t, "POST", "/clients/"+e.clientID+"/disable", nil); st != 200 {
		t.Fatalf("disable: %d", st)
	}
	e.advance(2 * time.Hour)
	_, err = src.Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != 401 || !strings.Contains(err.Error(), "jackpot: m2m token") {
		t.Fatalf("disabled client: %v", err)
	}
	n := e.tokens.Load()
	for range 50 {
		src.Token()
	}
	if e.tokens.Load() != n {
		t.Fatalf("%d requests during the back-off", e.tokens.Load()-n)
	}
}
