package jackpot_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/dialect/jackpot"
	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/testutil/fakeupstream"
)

type storeClient = store.Client

// Routes of the tests (the same as docs/dialects/jackpot.md).
const (
	storesPath  = "/v2/stores"
	reservePath = "/v2/stores/s1/offers/o1/reserve-voucher-by-price"
	confirmPath = "/v2/voucher/v-1/confirm"
)

func jackpotRoutes(upstreamURL string) func(*config.Config) {
	return func(c *config.Config) {
		c.Upstreams = map[string]string{"pos": upstreamURL}
		c.Routes = []config.Route{
			{Path: "/v2/stores", Methods: []string{"GET"}, Auth: []string{jackpot.AuthAPIKey}, Upstream: "pos"},
			{Path: "/v2/stores/{store}/offers/{offer}/reserve-voucher-by-price", Methods: []string{"POST"},
				Auth: []string{jackpot.AuthSession}, Consume: true, MaxAmountField: "price", Upstream: "pos"},
			{Path: "/v2/voucher/{id}/confirm", Methods: []string{"PUT"}, Auth: []string{jackpot.AuthM2M}, Upstream: "pos"},
		}
		// Most tests send many deliberately bad credentials from 127.0.0.1; the throttle has its
		// own test with low limits.
		c.Throttle.PerAddress = 100_000
		c.Throttle.PerAddressIdent = 100_000
		c.Throttle.PerIdentity = 100_000
	}
}

// env is a running posgate with jackpot routes in front of a recording upstream.
type env struct {
	inst *servertest.Instance
	up   *fakeupstream.Server
	clk  *clock.Fake // nil when the instance runs on the real clock
}

type envOptions struct {
	fake      bool // run on a fake clock
	driver    string
	dsn       string
	dataDir   string // shared by replicas: one master key opens every sealed API signature
	up        *fakeupstream.Server
	configure func(*config.Config)
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{up: o.up}
	if e.up == nil {
		e.up = fakeupstream.Start(t, nil)
	}
	opts := servertest.Options{Driver: o.driver, DSN: o.dsn, DataDir: o.dataDir}
	if o.fake {
		e.clk = clock.NewFake(time.Now().Truncate(time.Second))
		opts.Clock = e.clk
	}
	routes := jackpotRoutes(e.up.URL)
	opts.Configure = func(c *config.Config) {
		routes(c)
		if o.configure != nil {
			o.configure(c)
		}
	}
	e.inst = servertest.Start(t, opts)
	return e
}

func (e *env) now() time.Time {
	if e.clk != nil {
		return e.clk.Now()
	}
	return time.Now()
}

// jackpotClient is a client as the admin API created it: its secrets in clear, shown once.
type jackpotClient struct {
	ID, APIKey, Secret, Signature string
}

var bothGrants = []string{jackpot.GrantJWTBearer, jackpot.GrantClientCredentials}

// createClient creates a jackpot client through the admin API (the server's admin core).
func (e *env) createClient(t *testing.T, grants []string) jackpotClient {
	t.Helper()
	status, resp := e.inst.Admin(t, "POST", "/clients", map[string]any{
		"name": "shop-" + t.Name(), "grant_types": grants, "scopes": []string{}, "audiences": []string{},
		"apikey": true, "assertion_secret": true,
	})
	if status != http.StatusCreated && status != http.StatusOK {
		t.Fatalf("create client: %d %v", status, resp)
	}
	c := jackpotClient{}
	c.ID, _ = resp["id"].(string)
	c.APIKey, _ = resp["client_id"].(string)
	c.Secret, _ = resp["client_secret"].(string)
	c.Signature, _ = resp["assertion_secret"].(string)
	if !strings.HasPrefix(c.APIKey, "pg_ck_") || !strings.HasPrefix(c.Secret, "pg_cs_") || !strings.HasPrefix(c.Signature, "pg_as_") || c.ID == "" {
		t.Fatalf("create client answered %v", resp)
	}
	return c
}

// answer is an HTTP answer with its JSON body decoded.
type answer struct {
	Status int
	Header http.Header
	Raw    []byte
	JSON   map[string]any
}

func (a answer) str(k string) string { s, _ := a.JSON[k].(string); return s }

func (e *env) do(t *testing.T, method, path string, header http.Header, body []byte) answer {
	t.Helper()
	req, err := http.NewRequest(method, e.inst.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	_ = json.Unmarshal(raw, &a.JSON)
	return a
}

func jsonHeader() http.Header { return http.Header{"Content-Type": {"application/json"}} }

// token posts v as JSON to /v2/token.
func (e *env) token(t *testing.T, v any) answer {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return e.do(t, "POST", jackpot.TokenPath, jsonHeader(), b)
}

func (e *env) session(t *testing.T, c jackpotClient, assertion string) answer {
	t.Helper()
	return e.token(t, map[string]string{"grant_type": jackpot.GrantJWTBearer, "client_id": c.APIKey, "assertion": assertion})
}

func (e *env) m2m(t *testing.T, c jackpotClient) answer {
	t.Helper()
	return e.token(t, map[string]string{"grant_type": jackpot.GrantClientCredentials, "client_id": c.APIKey, "client_secret": c.Secret})
}

// mustToken returns the access token of a 200 answer.
func mustToken(t *testing.T, a answer) string {
	t.Helper()
	if a.Status != http.StatusOK || a.str("access_token") == "" {
		t.Fatalf("token request: %d %s", a.Status, a.Raw)
	}
	return a.str("access_token")
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// signHS256 builds an assertion from a literal header and claims, so tests can send what a JWT
// library would refuse to produce.
func signHS256(key []byte, header string, claims any) string {
	var payload []byte
	switch c := claims.(type) {
	case string:
		payload = []byte(c)
	default:
		payload, _ = json.Marshal(c)
	}
	in := b64([]byte(header)) + "." + b64(payload)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(in))
	return in + "." + b64(mac.Sum(nil))
}

const hs256 = `{"alg":"HS256","typ":"JWT"}`

// assertion signs a valid assertion for c at the env's now.
func (e *env) assertion(c jackpotClient, amount float64, nk string) string {
	return signHS256([]byte(c.Signature), hs256, map[string]any{"amount": amount, "iat": e.now().Unix(), "notificationKey": nk})
}

// checkNoSecrets fails when the instance's logs or audit trail contain any of secrets.
func (e *env) checkNoSecrets(t *testing.T, secrets ...string) {
	t.Helper()
	logs := e.inst.Logs()
	_, audit := e.inst.Admin(t, "GET", "/audit?limit=1000", nil)
	auditJSON, _ := json.Marshal(audit)
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if strings.Contains(logs, s) {
			t.Errorf("a secret appears in the logs: %.12s…", s)
		}
		if strings.Contains(string(auditJSON), s) {
			t.Errorf("a secret appears in the audit trail: %.12s…", s)
		}
	}
}
