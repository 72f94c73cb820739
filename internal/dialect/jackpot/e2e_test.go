package jackpot_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/dialect/jackpot"
	"github.com/posgate/posgate/internal/store/pgtest"
	"github.com/posgate/posgate/internal/testutil/doctest"
	"github.com/posgate/posgate/internal/testutil/fakeupstream"
)

func checkTokenErrorShape(t *testing.T, a answer, status int, code string) {
	t.Helper()
	if a.Status != status || a.str("error") != code {
		t.Fatalf("got %d %s; want %d %s", a.Status, a.Raw, status, code)
	}
	if len(a.JSON) != 2 || a.str("error_description") == "" {
		t.Fatalf("body %s: want exactly error and error_description", a.Raw)
	}
	if d := a.str("error_description"); strings.ContainsAny(d, "\"\\") || strings.IndexFunc(d, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
		t.Fatalf("error_description %q holds a character RFC 6749 §5.2 forbids", d)
	}
	if a.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("Cache-Control %q", a.Header.Get("Cache-Control"))
	}
	if !strings.HasPrefix(a.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("Content-Type %q", a.Header.Get("Content-Type"))
	}
	if (status == http.StatusUnauthorized) != (a.Header.Get("WWW-Authenticate") != "") {
		t.Fatalf("status %d with WWW-Authenticate %q", status, a.Header.Get("WWW-Authenticate"))
	}
}

func checkTokenSuccess(t *testing.T, a answer, expiresIn float64) string {
	t.Helper()
	if a.Status != http.StatusOK {
		t.Fatalf("got %d %s", a.Status, a.Raw)
	}
	if len(a.JSON) != 3 || a.str("token_type") != "Bearer" || a.JSON["expires_in"] != expiresIn || a.str("access_token") == "" {
		t.Fatalf("body %s: want exactly access_token, token_type Bearer, expires_in %v", a.Raw, expiresIn)
	}
	if a.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("Cache-Control %q", a.Header.Get("Cache-Control"))
	}
	return a.str("access_token")
}

func TestTokenRequestShapes(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.createClient(t, bothGrants)
	m2mOnly := e.createClient(t, []string{jackpot.GrantClientCredentials})
	good := e.assertion(c, 10, "shape-ok")

	raw := func(ct, body string) answer {
		h := http.Header{}
		if ct != "" {
			h.Set("Content-Type", ct)
		}
		return e.do(t, "POST", jackpot.TokenPath, h, []byte(body))
	}
	jb := jackpot.GrantJWTBearer
	cases := []struct {
		name   string
		a      func() answer
		status int
		code   string
	}{
		{"form body", func() answer {
			return raw("application/x-www-form-urlencoded", "grant_type=client_credentials&client_id="+c.APIKey+"&client_secret="+c.Secret)
		}, 400, "invalid_request"},
		{"no content type", func() answer { return raw("", `{"grant_type":"client_credentials"}`) }, 400, "invalid_request"},
		{"invalid JSON", func() answer { return raw("application/json", `{"grant_type":`) }, 400, "invalid_request"},
		{"array body", func() answer { return raw("application/json", `[]`) }, 400, "invalid_request"},
		{"two objects", func() answer { return raw("application/json", `{}{}`) }, 400, "invalid_request"},
		{"duplicate grant_type", func() answer {
			return raw("application/json", `{"grant_type":"client_credentials","grant_type":"`+jb+`","client_id":"`+c.APIKey+`","client_secret":"`+c.Secret+`"}`)
		}, 400, "invalid_request"},
		{"duplicate client_id differing in case", func() answer {
			return raw("application/json", `{"grant_type":"client_credentials","client_id":"`+c.APIKey+`","Client_ID":"x","client_secret":"`+c.Secret+`"}`)
		}, 400, "invalid_request"},
		{"grant_type not a string", func() answer { return raw("application/json", `{"grant_type":1}`) }, 400, "invalid_request"},
		{"client_secret not a string", func() answer {
			return raw("application/json", `{"grant_type":"client_credentials","client_id":"`+c.APIKey+`","client_secret":["`+c.Secret+`"]}`)
		}, 400, "invalid_request"},
		{"body too large", func() answer {
			return raw("application/json", `{"grant_type":"client_credentials","pad":"`+strings.Repeat("x", 20<<10)+`"}`)
		}, 413, "invalid_request"},
		{"grant_type missing", func() answer { return e.token(t, map[string]string{"client_id": c.APIKey}) }, 400, "invalid_request"},
		{"grant password", func() answer {
			return e.token(t, map[string]string{"grant_type": "password", "client_id": c.APIKey, "username": "u", "password": "p"})
		}, 400, "unsupported_grant_type"},
		{"grant refresh_token", func() answer { return e.token(t, map[string]string{"grant_type": "refresh_token"}) }, 400, "unsupported_grant_type"},
		{"assertion missing", func() answer { return e.token(t, map[string]string{"grant_type": jb, "client_id": c.APIKey}) }, 400, "invalid_request"},
		{"client_id missing (jwt-bearer)", func() answer { return e.token(t, map[string]string{"grant_type": jb, "assertion": good}) }, 401, "invalid_client"},
		{"client_id missing (client_credentials)", func() answer {
			return e.token(t, map[string]string{"grant_type": "client_credentials", "client_secret": c.Secret})
		}, 401, "invalid_client"},
		{"unknown client_id", func() answer {
			return e.token(t, map[string]string{"grant_type": jb, "client_id": "pg_ck_unknown", "assertion": good})
		}, 401, "invalid_client"},
		{"client secret as client_id", func() answer {
			return e.token(t, map[string]string{"grant_type": "client_credentials", "client_id": c.Secret, "client_secret": c.Secret})
		}, 401, "invalid_client"},
		{"client_secret missing", func() answer {
			return e.token(t, map[string]string{"grant_type": "client_credentials", "client_id": c.APIKey})
		}, 401, "invalid_client"},
		{"client_secret empty", func() answer {
			return e.token(t, map[string]string{"grant_type": "client_credentials", "client_id": c.APIKey, "client_secret": ""})
		}, 401, "invalid_client"},
		{"client_secret wrong", func() answer {
			return e.token(t, map[string]string{"grant_type": "client_credentials", "client_id": c.APIKey, "client_secret": c.Secret + "x"})
		}, 401, "invalid_client"},
		{"API signature as client secret", func() answer {
			return e.token(t, map[string]string{"grant_type": "client_credentials", "client_id": c.APIKey, "client_secret": c.Signature})
		}, 401, "invalid_client"},
		{"grant not given to the client", func() answer {
			return e.token(t, map[string]string{"grant_type": jb, "client_id": m2mOnly.APIKey, "assertion": e.assertion(m2mOnly, 1, "x")})
		}, 400, "unauthorized_client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.a()
			checkTokenErrorShape(t, a, tc.status, tc.code)
			if strings.Contains(string(a.Raw), c.Secret) || strings.Contains(string(a.Raw), c.APIKey) {
				t.Fatalf("answer echoes a credential: %s", a.Raw)
			}
		})
	}

	t.Run("client_credentials", func(t *testing.T) {
		checkTokenSuccess(t, e.m2m(t, c), 3600)
	})
	t.Run("jwt-bearer", func(t *testing.T) {
		checkTokenSuccess(t, e.session(t, c, good), 3600)
	})
	var tok string
	t.Run("unknown members are ignored", func(t *testing.T) {
		a := e.token(t, map[string]any{"grant_type": "client_credentials", "client_id": c.APIKey, "client_secret": c.Secret, "scope": "x", "extra": map[string]any{"a": 1}})
		tok = checkTokenSuccess(t, a, 3600)
	})

	// Refusals are audited — by internal client id, never with a credential — and nothing secret
	// reaches the logs.
	_, audit := e.inst.Admin(t, "GET", "/audit?limit=1000", nil)
	events, _ := audit["events"].([]any)
	refused := 0
	for _, ev := range events {
		m, _ := ev.(map[string]any)
		if m["action"] == "jackpot.token.refused" {
			refused++
			if m["outcome"] != "denied" || m["address"] == "" {
				t.Errorf("audit event %v", m)
			}
		}
	}
	if refused < 8 {
		t.Errorf("%d jackpot.token.refused audit events (audit answered %v)", refused, audit)
	}
	e.checkNoSecrets(t, c.APIKey, c.Secret, c.Signature, good, tok, m2mOnly.APIKey, m2mOnly.Secret, m2mOnly.Signature)
}

// Every assertion rule of the spec, through the real endpoint, with the clock held still.
func TestAssertionChecks(t *testing.T) {
	e := newEnv(t, envOptions{fake: true})
	c := e.createClient(t, bothGrants)
	other := e.createClient(t, bothGrants)
	now := e.now().Unix()
	key := []byte(c.Signature)
	claims := func(kv ...any) map[string]any {
		m := map[string]any{"amount": 10, "iat": now, "notificationKey": fmt.Sprintf("nk-%d", time.Now().UnixNano())}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	hs512 := func(k []byte, cl any) string {
		p, _ := json.Marshal(cl)
		in := b64([]byte(`{"alg":"HS512","typ":"JWT"}`)) + "." + b64(p)
		mac := hmac.New(sha512.New, k)
		mac.Write([]byte(in))
		return in + "." + b64(mac.Sum(nil))
	}
	good := signHS256(key, hs256, claims())
	parts := strings.Split(good, ".")
	cases := []struct {
		name      string
		assertion string
		want      string // substring of error_description; "" = accepted; "*" = refused
	}{
		{"valid", signHS256(key, hs256, claims()), ""},
		{"valid with userId, forceManualConfirm and unknown claims", signHS256(key, hs256, claims("userId", "u1", "forceManualConfirm", true, "shop", map[string]any{"x": 1}, "aud", "whatever")), ""},
		{"signed with the API key", signHS256([]byte(c.APIKey), hs256, claims()), "signature does not verify"},
		{"signed with the client secret", signHS256([]byte(c.Secret), hs256, claims()), "signature does not verify"},
		{"signed with another client's API signature", signHS256([]byte(other.Signature), hs256, claims()), "signature does not verify"},
		{"alg none, no signature", b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + ".", "HS256"},
		{"alg none, signed", signHS256(key, `{"alg":"none"}`, claims()), "HS256"},
		{"alg HS512", hs512(key, claims()), "HS256"},
		{"alg RS256 (HMAC with the key as if it were public)", signHS256(key, `{"alg":"RS256","typ":"JWT"}`, claims()), "HS256"},
		{"alg with a quote and a backslash", signHS256(key, `{"alg":"H\\\"S256\u00e9","typ":"JWT"}`, claims()), "HS256"},
		{"alg missing", signHS256(key, `{"typ":"JWT"}`, claims()), "alg"},
		{"duplicate alg", signHS256(key, `{"alg":"none","alg":"HS256"}`, claims()), "malformed"},
		{"duplicate amount", signHS256(key, hs256, fmt.Sprintf(`{"amount":1,"amount":1000,"iat":%d,"notificationKey":"dup"}`, now)), "malformed"},
		{"padded segment", parts[0] + "=." + parts[1] + "." + parts[2], "*"},
		{"non-canonical last character", parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + flipLastBits(parts[2][len(parts[2])-1]), "*"},
		{"too large", signHS256(key, hs256, claims("pad", strings.Repeat("x", 9000))), "larger than"},
		{"not a JWS", "not-a-jwt", "*"},
		{"amount missing", signHS256(key, hs256, claims("amount", nil)), "amount is missing"},
		{"amount zero", signHS256(key, hs256, claims("amount", 0)), "amount must be a positive number"},
		{"amount negative", signHS256(key, hs256, claims("amount", -5)), "amount must be a positive number"},
		{"amount string", signHS256(key, hs256, claims("amount", "10")), "amount must be a positive number"},
		{"iat missing", signHS256(key, hs256, claims("iat", nil)), "iat is missing"},
		{"iat fractional", signHS256(key, hs256, claims("iat", float64(now)+0.5)), "integer"},
		{"iat 300 s old", signHS256(key, hs256, claims("iat", now-300)), ""},
		{"iat 301 s old", signHS256(key, hs256, claims("iat", now-301)), "in the past"},
		{"iat 60 s ahead", signHS256(key, hs256, claims("iat", now+60)), ""},
		{"iat 61 s ahead", signHS256(key, hs256, claims("iat", now+61)), "in the future"},
		{"notificationKey missing", signHS256(key, hs256, claims("notificationKey", nil)), "notificationKey is missing"},
		{"notificationKey empty", signHS256(key, hs256, claims("notificationKey", "")), "notificationKey must not be empty"},
		{"notificationKey number", signHS256(key, hs256, claims("notificationKey", 7)), "notificationKey must be a string"},
		{"notificationKey 128 characters", signHS256(key, hs256, claims("notificationKey", strings.Repeat("ü", 128))), ""},
		{"notificationKey 129 characters", signHS256(key, hs256, claims("notificationKey", strings.Repeat("a", 129))), "at most 128"},
		{"userId wrong type", signHS256(key, hs256, claims("userId", []int{1})), "userId"},
		{"forceManualConfirm wrong type", signHS256(key, hs256, claims("forceManualConfirm", "yes")), "forceManualConfirm must be a boolean"},
		{"exp passed", signHS256(key, hs256, claims("exp", now-1)), "expired"},
		{"exp ahead", signHS256(key, hs256, claims("exp", now+60)), ""},
		{"nbf ahead", signHS256(key, hs256, claims("nbf", now+30)), "not valid yet"},
		{"nbf not a number", signHS256(key, hs256, claims("nbf", "now")), "nbf must be a number"},
		{"claim not UTF-8", signHS256(key, hs256, fmt.Sprintf("{\"amount\":1,\"iat\":%d,\"notificationKey\":\"nk-\xff\"}", now)), "UTF-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := e.session(t, c, tc.assertion)
			if tc.want == "" {
				checkTokenSuccess(t, a, 3600)
				return
			}
			checkTokenErrorShape(t, a, http.StatusBadRequest, "invalid_grant")
			if tc.want != "*" && !strings.Contains(a.str("error_description"), tc.want) {
				t.Fatalf("error_description %q; want it to contain %q", a.str("error_description"), tc.want)
			}
		})
	}
}

// flipLastBits returns the base64url character that decodes to the same bytes as c when only the
// unused low bits differ (a non-canonical encoding a lax decoder accepts).
func flipLastBits(c byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return string(alphabet[i^1])
}

func TestRejectedAssertionBurnsNothing(t *testing.T) {
	e := newEnv(t, envOptions{fake: true})
	c := e.createClient(t, bothGrants)
	key := []byte(c.Signature)
	now := e.now().Unix()
	for i, bad := range []map[string]any{
		{"amount": 0, "iat": now, "notificationKey": "burn-1"},             // bad claim
		{"amount": 5, "iat": now - 3600, "notificationKey": "burn-2"},      // too old
		{"amount": 5, "iat": now, "notificationKey": "burn-3", "exp": now}, // expired
	} {
		checkTokenErrorShape(t, e.session(t, c, signHS256(key, hs256, bad)), 400, "invalid_grant")
		nk := bad["notificationKey"].(string)
		checkTokenSuccess(t, e.session(t, c, e.assertion(c, 5, nk)), 3600)
		_ = i
	}
	// A bad signature with a notificationKey, then the real one.
	checkTokenErrorShape(t, e.session(t, c, signHS256([]byte(c.APIKey), hs256, map[string]any{"amount": 5, "iat": now, "notificationKey": "burn-4"})), 400, "invalid_grant")
	checkTokenSuccess(t, e.session(t, c, e.assertion(c, 5, "burn-4")), 3600)
	// An unknown client never records anything either.
	a := e.token(t, map[string]string{"grant_type": jackpot.GrantJWTBearer, "client_id": "pg_ck_nobody", "assertion": e.assertion(c, 5, "burn-5")})
	checkTokenErrorShape(t, a, 401, "invalid_client")
	checkTokenSuccess(t, e.session(t, c, e.assertion(c, 5, "burn-5")), 3600)
	// A jti refused with a reused notificationKey does not burn the notificationKey's transaction
	// of another jti… and the notificationKey of one client is free for another client.
	d := e.createClient(t, bothGrants)
	checkTokenSuccess(t, e.session(t, d, e.assertion(d, 5, "burn-5")), 3600)
}

func TestReplay(t *testing.T) {
	e := newEnv(t, envOptions{fake: true})
	c := e.createClient(t, bothGrants)
	key := []byte(c.Signature)
	a1 := e.assertion(c, 10, "replay-1")
	checkTokenSuccess(t, e.session(t, c, a1), 3600)

	a := e.session(t, c, a1)
	checkTokenErrorShape(t, a, 400, "invalid_grant")
	if !strings.Contains(a.str("error_description"), "notificationKey was already used") {
		t.Fatalf("same bytes: %s", a.Raw)
	}
	// Re-signed later with the same notificationKey.
	e.clk.Advance(30 * time.Second)
	a = e.session(t, c, e.assertion(c, 10, "replay-1"))
	checkTokenErrorShape(t, a, 400, "invalid_grant")
	// Same jti, fresh notificationKey.
	now := e.now().Unix()
	checkTokenSuccess(t, e.session(t, c, signHS256(key, hs256, map[string]any{"amount": 1, "iat": now, "notificationKey": "replay-2", "jti": "j-1"})), 3600)
	a = e.session(t, c, signHS256(key, hs256, map[string]any{"amount": 1, "iat": now, "notificationKey": "replay-3", "jti": "j-1"}))
	checkTokenErrorShape(t, a, 400, "invalid_grant")
	if !strings.Contains(a.str("error_description"), "jti") {
		t.Fatalf("same jti: %s", a.Raw)
	}
	// The refused replay-3 burned nothing of replay-3.
	checkTokenSuccess(t, e.session(t, c, e.assertion(c, 1, "replay-3")), 3600)
}

// Two posgate processes on one PostgreSQL database: an assertion accepted by one is refused by
// the other (same bytes and re-signed), and of many concurrent attempts exactly one wins.
func TestReplayAcrossReplicas(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	up := fakeupstream.Start(t, nil)
	dir := t.TempDir()
	// Replicas of one deployment share the master key (data dir) and the issuer name.
	sameIssuer := func(c *config.Config) { c.Server.Issuer = "https://posgate.replicas.test" }
	a := newEnv(t, envOptions{driver: "postgres", dsn: dsn, dataDir: dir, up: up, configure: sameIssuer})
	b := newEnv(t, envOptions{driver: "postgres", dsn: dsn, dataDir: dir, up: up, configure: sameIssuer})
	c := a.createClient(t, bothGrants)

	first := a.assertion(c, 10, "cross-1")
	checkTokenSuccess(t, a.session(t, c, first), 3600)
	checkTokenErrorShape(t, b.session(t, c, first), 400, "invalid_grant")
	checkTokenErrorShape(t, b.session(t, c, b.assertion(c, 10, "cross-1")), 400, "invalid_grant")

	// Race: 16 copies of one assertion, half to each replica, at once.
	race := a.assertion(c, 10, "cross-race")
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := a
			if i%2 == 1 {
				e = b
			}
			st := e.session(t, c, race).Status
			mu.Lock()
			statuses[st]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[200] != 1 || statuses[400] != 15 {
		t.Fatalf("statuses %v; want exactly one 200", statuses)
	}

	// A session token consumed through one replica is refused by the other.
	tok := mustToken(t, b.session(t, c, b.assertion(c, 10, "cross-consume")))
	if r := a.do(t, "POST", reservePath, withJSON(bearer(tok)), []byte(`{"price":5}`)); r.Status != 200 {
		t.Fatalf("reserve: %d %s", r.Status, r.Raw)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := b.do(t, "POST", reservePath, withJSON(bearer(tok)), []byte(`{"price":5}`))
		if r.Status == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other replica still accepts a consumed session token: %d %s", r.Status, r.Raw)
		}
		time.Sleep(50 * time.Millisecond) // polling for the revocation notice, not waiting for an expiry
	}
}

// tamper changes one character in the middle of a token's signature (always a different one).
func tamper(tok string) string {
	i := len(tok) - 10
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

func withJSON(h http.Header) http.Header {
	h.Set("Content-Type", "application/json")
	return h
}

func checkJackpotError(t *testing.T, a answer, status int) {
	t.Helper()
	if a.Status != status {
		t.Fatalf("got %d %s; want %d", a.Status, a.Raw, status)
	}
	if len(a.JSON) != 3 || a.JSON["statusCode"] != float64(status) || a.str("error") != http.StatusText(status) || a.str("message") == "" {
		t.Fatalf("body %s: want {statusCode:%d, error:%q, message}", a.Raw, status, http.StatusText(status))
	}
	if status == 401 && a.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("401 without WWW-Authenticate")
	}
}

// principalOf decodes the identity header the upstream received.
func principalOf(t *testing.T, r fakeupstream.Request) map[string]any {
	t.Helper()
	h := r.Header.Get("X-Posgate-Principal")
	if h == "" {
		t.Fatalf("no X-Posgate-Principal on %s %s", r.Method, r.Path)
	}
	doc, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatalf("X-Posgate-Principal %q: %v", h, err)
	}
	var p map[string]any
	if err := json.Unmarshal(doc, &p); err != nil {
		t.Fatalf("X-Posgate-Principal %s: %v", doc, err)
	}
	return p
}

func TestMeansPerRoute(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.createClient(t, bothGrants)
	session := mustToken(t, e.session(t, c, e.assertion(c, 50, "means-1")))
	m2m := mustToken(t, e.m2m(t, c))
	apikey := http.Header{"Apikey": {c.APIKey}}

	// The right means on each route reaches the upstream, without the credential and naming the
	// client by its internal id.
	if a := e.do(t, "GET", storesPath, apikey, nil); a.Status != 200 {
		t.Fatalf("apikey route: %d %s", a.Status, a.Raw)
	}
	if a := e.do(t, "PUT", confirmPath, bearer(m2m), nil); a.Status != 200 {
		t.Fatalf("m2m route: %d %s", a.Status, a.Raw)
	}
	reqs := e.up.Requests()
	if len(reqs) != 2 {
		t.Fatalf("upstream got %d requests", len(reqs))
	}
	for _, r := range reqs {
		if r.Header.Get("Apikey") != "" || r.Header.Get("Authorization") != "" {
			t.Fatalf("credential forwarded: %v", r.Header)
		}
		p := principalOf(t, r)
		if p["client"] != c.ID || p["subject"] != c.ID || p["dialect"] != "jackpot" {
			t.Fatalf("principal %v; want client %s", p, c.ID)
		}
		if doc, _ := json.Marshal(p); strings.Contains(string(doc), c.APIKey) || strings.Contains(string(doc), "pg_ck_") {
			t.Fatalf("the principal names the API key: %s", doc)
		}
		for _, v := range r.Header {
			for _, s := range v {
				if strings.Contains(s, c.APIKey) || strings.Contains(s, m2m) {
					t.Fatalf("the upstream received a credential: %q", s)
				}
			}
		}
	}
	if p := principalOf(t, reqs[0]); p["means"] != jackpot.AuthAPIKey {
		t.Fatalf("apikey principal %v", p)
	}
	if p := principalOf(t, reqs[1]); p["means"] != jackpot.AuthM2M || p["claims"] != nil && len(p["claims"].(map[string]any)) > 0 {
		t.Fatalf("m2m principal %v: want no session claims", p)
	}

	refusals := []struct {
		name         string
		method, path string
		h            http.Header
		status       int
	}{
		{"no credential on the apikey route", "GET", storesPath, nil, 401},
		{"wrong API key", "GET", storesPath, http.Header{"Apikey": {"pg_ck_wrong"}}, 401},
		{"API signature as API key", "GET", storesPath, http.Header{"Apikey": {c.Signature}}, 401},
		{"two apikey headers", "GET", storesPath, http.Header{"Apikey": {c.APIKey, c.APIKey}}, 401},
		{"session token on the apikey route", "GET", storesPath, bearer(session), 403},
		{"API key on the session route", "POST", reservePath, withJSON(apikey.Clone()), 403},
		{"m2m token on the session route", "POST", reservePath, withJSON(bearer(m2m)), 403},
		{"session token on the m2m route", "PUT", confirmPath, bearer(session), 403},
		{"API key on the m2m route", "PUT", confirmPath, apikey, 403},
		{"no credential on the session route", "POST", reservePath, jsonHeader(), 401},
		{"garbage bearer", "PUT", confirmPath, bearer("abc.def.ghi"), 401},
		{"empty bearer", "PUT", confirmPath, http.Header{"Authorization": {"Bearer "}}, 401},
		{"tampered session token", "POST", reservePath, withJSON(bearer(tamper(session))), 401},
	}
	before := len(e.up.Requests())
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			a := e.do(t, tc.method, tc.path, tc.h, []byte(`{"price":1}`))
			checkJackpotError(t, a, tc.status)
		})
	}
	if n := len(e.up.Requests()); n != before {
		t.Fatalf("refused requests reached the upstream (%d)", n-before)
	}

	// A disabled client: the token endpoint refuses at once; its API key within the cache TTL.
	if st, resp := e.inst.Admin(t, "POST", "/clients/"+c.ID+"/disable", nil); st/100 != 2 {
		t.Fatalf("disable: %d %v", st, resp)
	}
	checkTokenErrorShape(t, e.m2m(t, c), 401, "invalid_client")
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := e.do(t, "GET", storesPath, apikey, nil)
		if a.Status == 401 {
			checkJackpotError(t, a, 401)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a disabled client's API key still works: %d", a.Status)
		}
		time.Sleep(100 * time.Millisecond) // polling for the client cache to refresh
	}
	if a := e.do(t, "PUT", confirmPath, bearer(m2m), nil); a.Status != 401 {
		t.Fatalf("a disabled client's m2m token: %d %s", a.Status, a.Raw)
	}
	e.checkNoSecrets(t, c.APIKey, c.Secret, c.Signature, session, m2m)
}

func TestSessionConsumedAndAmountCap(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.createClient(t, bothGrants)
	a := e.session(t, c, signHS256([]byte(c.Signature), hs256, map[string]any{
		"amount": 25.5, "iat": time.Now().Unix(), "notificationKey": "cap-1", "userId": "cashier-7", "forceManualConfirm": true,
	}))
	tok := mustToken(t, a)

	// Above the amount: 403 in jackpot's shape, nothing forwarded.
	r := e.do(t, "POST", reservePath, withJSON(bearer(tok)), []byte(`{"price":25.51}`))
	checkJackpotError(t, r, 403)
	if n := len(e.up.Requests()); n != 0 {
		t.Fatalf("upstream got %d requests for a refused reservation", n)
	}
	// A non-2xx answer does not consume the session.
	e.up.SetStatus(reservePath, http.StatusConflict)
	if r := e.do(t, "POST", reservePath, withJSON(bearer(tok)), []byte(`{"price":25.5}`)); r.Status != http.StatusConflict {
		t.Fatalf("reserve answered 409 upstream: %d %s", r.Status, r.Raw)
	}
	e.up.SetStatus(reservePath, http.StatusOK)
	// Exactly the amount: forwarded, with the session claims in the identity header.
	r = e.do(t, "POST", reservePath, withJSON(bearer(tok)), []byte(`{"price":25.5}`))
	if r.Status != 200 {
		t.Fatalf("reserve at the amount: %d %s", r.Status, r.Raw)
	}
	reqs := e.up.Requests()
	p := principalOf(t, reqs[len(reqs)-1])
	claims, _ := p["claims"].(map[string]any)
	if p["means"] != jackpot.AuthSession || p["client"] != c.ID || claims["amount"] != 25.5 ||
		claims["notificationKey"] != "cap-1" || claims["userId"] != "cashier-7" || claims["forceManualConfirm"] != true {
		t.Fatalf("principal %v", p)
	}
	// Consumed: the session token no longer works anywhere.
	r = e.do(t, "POST", reservePath, withJSON(bearer(tok)), []byte(`{"price":1}`))
	checkJackpotError(t, r, 401)
	if n := len(e.up.Requests()); n != len(reqs) {
		t.Fatalf("a consumed session reached the upstream")
	}
}

func TestRotationOverlap(t *testing.T) {
	e := newEnv(t, envOptions{fake: true, configure: func(c *config.Config) { c.Jackpot.KeyOverlap = 600 }})
	c := e.createClient(t, bothGrants)
	oldSig := c.Signature

	status, resp := e.inst.Admin(t, "POST", "/clients/"+c.ID+"/rotate-assertion-secret", nil)
	if status != 200 {
		t.Fatalf("rotate: %d %v", status, resp)
	}
	newSig, _ := resp["assertion_secret"].(string)
	if !strings.HasPrefix(newSig, "pg_as_") || newSig == oldSig {
		t.Fatalf("rotate answered %v", resp)
	}
	until, err := time.Parse(time.RFC3339, resp["previous_valid_until"].(string))
	if err != nil || !until.Equal(e.now().Add(600*time.Second)) {
		t.Fatalf("previous_valid_until %v (%v); want now+600s", resp["previous_valid_until"], err)
	}
	sign := func(sig, nk string) string {
		return signHS256([]byte(sig), hs256, map[string]any{"amount": 1, "iat": e.now().Unix(), "notificationKey": nk})
	}
	checkTokenSuccess(t, e.session(t, c, sign(newSig, "rot-1")), 3600)
	checkTokenSuccess(t, e.session(t, c, sign(oldSig, "rot-2")), 3600)
	e.clk.Advance(599 * time.Second)
	checkTokenSuccess(t, e.session(t, c, sign(oldSig, "rot-3")), 3600)
	e.clk.Advance(time.Second)
	a := e.session(t, c, sign(oldSig, "rot-4"))
	checkTokenErrorShape(t, a, 400, "invalid_grant")
	if !strings.Contains(a.str("error_description"), "signature") {
		t.Fatalf("old key after the overlap: %s", a.Raw)
	}
	checkTokenSuccess(t, e.session(t, c, sign(newSig, "rot-4")), 3600)

	// Unknown client and a client that is not a jackpot client.
	if st, resp := e.inst.Admin(t, "POST", "/clients/cl_nope/rotate-assertion-secret", nil); st != 404 || resp["error"] == nil {
		t.Fatalf("unknown client: %d %v", st, resp)
	}
	st, plain := e.inst.Admin(t, "POST", "/clients", map[string]any{"name": "plain", "grant_types": []string{"client_credentials"}, "scopes": []string{}, "audiences": []string{}})
	if st/100 != 2 {
		t.Fatalf("create plain client: %d %v", st, plain)
	}
	if st, resp := e.inst.Admin(t, "POST", "/clients/"+plain["id"].(string)+"/rotate-assertion-secret", nil); st != 409 {
		t.Fatalf("non-jackpot client: %d %v", st, resp)
	}
}

func TestThrottle(t *testing.T) {
	e := newEnv(t, envOptions{fake: true, configure: func(c *config.Config) {
		c.Throttle.PerAddress = 3
		c.Throttle.Window = 60
	}})
	c := e.createClient(t, bothGrants)
	for range 3 {
		checkTokenErrorShape(t, e.token(t, map[string]string{"grant_type": "client_credentials", "client_id": c.APIKey, "client_secret": "pg_cs_wrong"}), 401, "invalid_client")
	}
	a := e.m2m(t, c) // the right secret, but this address is blocked now
	if a.Status != 429 || a.str("error") != "too_many_attempts" || a.Header.Get("Retry-After") == "" {
		t.Fatalf("after 3 failures: %d %s %v", a.Status, a.Raw, a.Header)
	}
	r := e.do(t, "GET", storesPath, http.Header{"Apikey": {c.APIKey}}, nil)
	checkJackpotError(t, r, 429)
	e.clk.Advance(61 * time.Second)
	checkTokenSuccess(t, e.m2m(t, c), 3600)
}

// An assertion minted by PyJWT (Debian's python3-jwt), not by Go code, is accepted.
func TestPyJWTAssertion(t *testing.T) {
	py := doctest.PythonWithJWT(t)
	e := newEnv(t, envOptions{})
	c := e.createClient(t, bothGrants)
	script := filepath.Join(t.TempDir(), "mint.py")
	if err := os.WriteFile(script, []byte(`import os, sys, time, jwt
claims = {"amount": float(sys.argv[1]), "iat": int(time.time()), "notificationKey": sys.argv[2], "userId": 7, "forceManualConfirm": False}
print(jwt.encode(claims, os.environ["API_SIGNATURE"], algorithm="HS256"))
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, script, "19.99", "pyjwt-1")
	cmd.Env = append(os.Environ(), "API_SIGNATURE="+c.Signature)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("PyJWT: %v", err)
	}
	tok := checkTokenSuccess(t, e.session(t, c, strings.TrimSpace(string(out))), 3600)
	r := e.do(t, "POST", reservePath, withJSON(bearer(tok)), []byte(`{"price":19.99}`))
	if r.Status != 200 {
		t.Fatalf("reserve: %d %s", r.Status, r.Raw)
	}
	reqs := e.up.Requests()
	claims, _ := principalOf(t, reqs[len(reqs)-1])["claims"].(map[string]any)
	if claims["amount"] != 19.99 || claims["userId"] != float64(7) || claims["forceManualConfirm"] != false {
		t.Fatalf("claims %v", claims)
	}
	// PyJWT with another algorithm is refused.
	cmd = exec.Command(py, "-c", `import os, time, jwt; print(jwt.encode({"amount": 1, "iat": int(time.time()), "notificationKey": "pyjwt-2"}, os.environ["API_SIGNATURE"], algorithm="HS512"))`)
	cmd.Env = append(os.Environ(), "API_SIGNATURE="+c.Signature)
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("PyJWT: %v", err)
	}
	checkTokenErrorShape(t, e.session(t, c, strings.TrimSpace(string(out))), 400, "invalid_grant")
}

func TestDemo(t *testing.T) {
	e := newEnv(t, envOptions{})
	mod, err := jackpot.New(e.inst.Svc)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := mod.(interface {
		Demo(ctx context.Context, baseURL string) ([]string, error)
	})
	if !ok {
		t.Fatal("jackpot module is not an app.Demoer")
	}
	for round := range 2 {
		lines, err := d.Demo(context.Background(), e.inst.URL)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("bash", "-c", "set -euo pipefail\n"+strings.Join(lines, "\n")).CombinedOutput()
		if err != nil || strings.Count(string(out), `"token_type":"Bearer"`) != 2 {
			t.Fatalf("round %d: %v\n%s", round, err, out)
		}
	}
	// Exactly one demo client exists, enabled: the second round re-issued the first one's.
	all, err := e.inst.Svc.Store.ListClients(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(slices.DeleteFunc(all, func(c2 *storeClient) bool { return c2.Name != jackpot.DemoClientName })); n != 1 {
		t.Fatalf("%d demo clients", n)
	}
	if all[0].Disabled {
		t.Fatal("the demo client is disabled")
	}
}

// Disabling a client through the admin API takes effect at once, although the API key is cached:
// the admin API announces the change on the event bus and the cache drops the client. The fake
// clock never moves, so no cache TTL can be what ends it.
func TestAdminDisableDropsCachedAPIKey(t *testing.T) {
	e := newEnv(t, envOptions{fake: true})
	c := e.createClient(t, bothGrants)
	apikey := http.Header{"Apikey": {c.APIKey}}
	if a := e.do(t, "GET", storesPath, apikey, nil); a.Status != 200 {
		t.Fatalf("apikey route before disable: %d %s", a.Status, a.Raw)
	}
	if status, resp := e.inst.Admin(t, "POST", "/clients/"+c.ID+"/disable", nil); status != 200 {
		t.Fatalf("disable: %d %v", status, resp)
	}
	if a := e.do(t, "GET", storesPath, apikey, nil); a.Status != 401 {
		t.Fatalf("apikey route after disable: %d %s, want 401", a.Status, a.Raw)
	}
	if a := e.m2m(t, c); a.Status != 401 {
		t.Fatalf("m2m token after disable: %d %s, want 401", a.Status, a.Raw)
	}
}

// With the store down, what needs it answers 503 with Retry-After in each endpoint's shape, and a
// session token still works on its signature alone (the upstream gets the call).
func TestStoreUnavailable(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.createClient(t, bothGrants)
	m2m := mustToken(t, e.m2m(t, c))
	if err := e.inst.Svc.Store.Close(); err != nil {
		t.Fatal(err)
	}
	a := e.m2m(t, c)
	checkTokenErrorShape(t, a, http.StatusServiceUnavailable, "temporarily_unavailable")
	if a.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	r := e.do(t, "GET", storesPath, http.Header{"Apikey": {c.APIKey}}, nil)
	checkJackpotError(t, r, http.StatusServiceUnavailable)
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	if r := e.do(t, "PUT", confirmPath, bearer(m2m), nil); r.Status != http.StatusOK {
		t.Fatalf("m2m token with the store down: %d %s", r.Status, r.Raw)
	}
}
