package oauth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/posgate/posgate/internal/config"
)

const (
	apiAudience = "https://api.chimpy.test"
	otherAud    = "https://other.chimpy.test"
)

// upstream is the protected API behind posgate's gateway: it records what reached it.
type upstream struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []http.Header
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.got = append(u.got, r.Header.Clone())
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"rentals":[]}`))
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) last() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.got) == 0 {
		return nil
	}
	return u.got[len(u.got)-1]
}

// withAPI routes /api/ (GET, POST) through the chimpy authenticator for apiAudience, scope
// "rentals", to up.
func withAPI(up *upstream, more func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		c.Upstreams = map[string]string{"pos": up.srv.URL}
		c.Routes = append(c.Routes, config.Route{Path: "/api/", Methods: []string{"GET", "POST"}, Auth: []string{"chimpy"},
			Scopes: []string{"rentals"}, Audience: apiAudience, Upstream: "pos"})
		if more != nil {
			more(c)
		}
	}
}

// callAPI calls GET /api/rentals with an access token.
func (e *env) callAPI(t *testing.T, at string) answer {
	t.Helper()
	h := http.Header{}
	if at != "" {
		h.Set("Authorization", "Bearer "+at)
	}
	return e.do(t, "GET", "/api/rentals", h, nil)
}

func wantInvalidToken(t *testing.T, a answer, descPart string) {
	t.Helper()
	if a.Status != http.StatusUnauthorized || a.str("error") != "invalid_token" {
		t.Fatalf("want 401 invalid_token, got %d %s", a.Status, a.Raw)
	}
	ch := a.Header.Get("WWW-Authenticate")
	if !strings.HasPrefix(ch, "Bearer ") || !strings.Contains(ch, `error="invalid_token"`) {
		t.Fatalf("WWW-Authenticate %q", ch)
	}
	if descPart != "" && !strings.Contains(strings.ToLower(a.str("error_description")), descPart) {
		t.Fatalf("error_description %q does not mention %q", a.str("error_description"), descPart)
	}
}

// TestPasswordFlowWithOAuth2Library drives the whole chimpy flow with golang.org/x/oauth2 against
// the real server: password grant, an API call through the gateway, expiry, the token source
// refreshing (rotation), then reuse of the rotated refresh token revoking the family and its
// access tokens.
func TestPasswordFlowWithOAuth2Library(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	e := newEnv(t, envOptions{configure: withAPI(up, nil)})
	c := e.createClient(t, []string{"password", "refresh_token"}, []string{"rentals", "offline_access"}, []string{apiAudience})
	uid := e.createUser(t, "ann@example.com", "correct horse battery")

	cfg := &oauth2.Config{
		ClientID: c.ID, ClientSecret: c.Secret,
		Endpoint: oauth2.Endpoint{TokenURL: e.inst.URL + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader},
		Scopes:   []string{"offline_access", "rentals"},
	}
	ctx := context.WithValue(t.Context(), oauth2.HTTPClient, e.inst.Client)
	tok, err := cfg.PasswordCredentialsToken(ctx, "ann@example.com", "correct horse battery")
	if err != nil {
		t.Fatalf("PasswordCredentialsToken: %v", err)
	}
	if tok.TokenType != "Bearer" || !strings.HasPrefix(tok.RefreshToken, "pg_rt_") || tok.Extra("scope") != "offline_access rentals" {
		t.Fatalf("token %+v scope %v", tok, tok.Extra("scope"))
	}
	if ei, _ := tok.Extra("expires_in").(float64); ei != 3600 {
		t.Fatalf("expires_in %v", tok.Extra("expires_in"))
	}
	cl := claims(t, tok.AccessToken)
	if cl["sub"] != uid || cl["aud"] != apiAudience || cl["azp"] != c.ID || cl["gty"] != "password" ||
		cl["scope"] != "offline_access rentals" || str(cl["sid"]) == "" || str(cl["jti"]) == "" || cl["client_id"] != c.Internal ||
		cl["iss"] != e.inst.Server.Issuer() {
		t.Fatalf("claims %v", cl)
	}
	if iat, _ := cl["iat"].(float64); int64(iat) != epoch.Unix() {
		t.Fatalf("iat %v, want the server's (fake) clock %d", cl["iat"], epoch.Unix())
	}
	if exp, _ := cl["exp"].(float64); int64(exp) != epoch.Unix()+3600 {
		t.Fatalf("exp %v", cl["exp"])
	}
	if h := header(t, tok.AccessToken); h["typ"] != "at+jwt" || h["alg"] != "EdDSA" || str(h["kid"]) == "" {
		t.Fatalf("header %v", h)
	}

	// The API call: the gateway accepts the token, the upstream sees who called and never the token.
	api := cfg.Client(ctx, tok)
	resp, err := api.Get(e.inst.URL + "/api/rentals")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("API call: %d", resp.StatusCode)
	}
	got := up.last()
	if got.Get("Authorization") != "" {
		t.Fatal("the upstream received the caller's Authorization header")
	}
	var principal map[string]any
	pj, _ := base64.RawURLEncoding.DecodeString(got.Get("X-Posgate-Principal"))
	if err := json.Unmarshal(pj, &principal); err != nil || principal["subject"] != uid || principal["dialect"] != "chimpy" {
		t.Fatalf("X-Posgate-Principal %q (%v)", got.Get("X-Posgate-Principal"), err)
	}

	// An hour later the access token has expired.
	e.advance(3601 * time.Second)
	wantInvalidToken(t, e.callAPI(t, tok.AccessToken), "expired")

	// The token source refreshes: a new access token and a rotated refresh token, same session.
	expired := &oauth2.Token{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: "Bearer", Expiry: time.Now().Add(-time.Minute)}
	ts := cfg.TokenSource(ctx, expired)
	tok2, err := ts.Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tok2.AccessToken == tok.AccessToken || tok2.RefreshToken == tok.RefreshToken || !strings.HasPrefix(tok2.RefreshToken, "pg_rt_") {
		t.Fatal("refresh did not rotate")
	}
	cl2 := claims(t, tok2.AccessToken)
	if cl2["sid"] != cl["sid"] || cl2["gty"] != "refresh_token" || cl2["sub"] != uid || cl2["scope"] != "offline_access rentals" {
		t.Fatalf("refreshed claims %v", cl2)
	}
	if a := e.callAPI(t, tok2.AccessToken); a.Status != http.StatusOK {
		t.Fatalf("API call after refresh: %d %s", a.Status, a.Raw)
	}
	// The token source keeps working while the token is fresh (no refresh on every call).
	if again, err := ts.Token(); err != nil || again.AccessToken != tok2.AccessToken {
		t.Fatalf("token source refreshed a fresh token: %v", err)
	}

	// Reuse: the rotated refresh token is presented again. The whole session dies.
	_, err = cfg.TokenSource(ctx, expired).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusForbidden || re.ErrorCode != "invalid_grant" {
		t.Fatalf("reuse: want 403 invalid_grant, got %v", err)
	}
	wantInvalidToken(t, e.callAPI(t, tok2.AccessToken), "revoked")
	if _, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok2.RefreshToken, Expiry: time.Now().Add(-time.Minute)}).Token(); err == nil {
		t.Fatal("the successor still works after reuse was detected")
	}
	if ev := e.audit(t, "token.refresh_reuse"); len(ev) != 1 || ev[0].Target != "user:"+uid || ev[0].Outcome != "denied" {
		t.Fatalf("reuse audit: %+v", ev)
	}
}

// TestClientCredentialsWithOAuth2Library: golang.org/x/oauth2/clientcredentials gets a token with
// Basic and with body authentication; no refresh token, ever.
func TestClientCredentialsWithOAuth2Library(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.createClient(t, []string{"client_credentials"}, []string{"read", "write"}, []string{apiAudience, otherAud})
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		cc := &clientcredentials.Config{
			ClientID: c.ID, ClientSecret: c.Secret, TokenURL: e.inst.URL + "/oauth/token", AuthStyle: style,
			Scopes: []string{"read", "offline_access"}, EndpointParams: url.Values{"audience": {otherAud}},
		}
		ctx := context.WithValue(t.Context(), oauth2.HTTPClient, e.inst.Client)
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatalf("style %v: %v", style, err)
		}
		if tok.RefreshToken != "" {
			t.Fatal("client_credentials yielded a refresh token")
		}
		if tok.Extra("scope") != "read" {
			t.Fatalf("scope %v: offline_access must be dropped for client_credentials", tok.Extra("scope"))
		}
		cl := claims(t, tok.AccessToken)
		if cl["sub"] != c.Internal || cl["client_id"] != c.Internal || cl["aud"] != otherAud || cl["gty"] != "client_credentials" || cl["sid"] != nil {
			t.Fatalf("claims %v", cl)
		}
		// The client introspects its own token.
		in := e.introspect(t, &c, tok.AccessToken)
		if in.JSON["active"] != true || in.str("client_id") != c.Internal || in.str("aud") != otherAud || in.str("scope") != "read" {
			t.Fatalf("introspection %s", in.Raw)
		}
	}
	// Without an audience the token is for posgate itself (the issuer).
	a := e.token(t, map[string]string{"grant_type": "client_credentials"}, &c)
	if a.Status != http.StatusOK {
		t.Fatalf("%d %s", a.Status, a.Raw)
	}
	if cl := claims(t, a.str("access_token")); cl["aud"] != e.inst.Server.Issuer() || cl["scope"] != "read write" {
		t.Fatalf("default audience/scope: %v", cl)
	}
	if a.Header.Get("Cache-Control") != "no-store" || a.JSON["expires_in"] != float64(3600) || a.str("token_type") != "Bearer" {
		t.Fatalf("response %v %s", a.Header, a.Raw)
	}
	if _, has := a.JSON["refresh_token"]; has {
		t.Fatal("refresh_token in a client_credentials answer")
	}
}

// TestAudienceLifetimes: chimpy.audience_lifetimes overrides the access lifetime of one audience,
// for user tokens and client_credentials alike; other audiences keep theirs.
func TestAudienceLifetimes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{configure: func(c *config.Config) {
		c.Chimpy.AccessLifetime = 600
		c.OAuth.AccessLifetime = 900
		c.Chimpy.AudienceLifetimes = map[string]int{apiAudience: 120}
	}})
	u := e.createClient(t, []string{"password"}, []string{"rentals"}, []string{apiAudience, otherAud})
	m := e.createClient(t, []string{"client_credentials"}, []string{"read"}, []string{apiAudience, otherAud})
	e.createUser(t, "ann", "correct horse battery")
	for _, c := range []struct {
		c    *client
		p    map[string]string
		want float64
	}{
		{&u, map[string]string{"grant_type": "password", "username": "ann", "password": "correct horse battery", "audience": apiAudience}, 120},
		{&u, map[string]string{"grant_type": "password", "username": "ann", "password": "correct horse battery", "audience": otherAud}, 600},
		{&m, map[string]string{"grant_type": "client_credentials", "audience": apiAudience}, 120},
		{&m, map[string]string{"grant_type": "client_credentials", "audience": otherAud}, 900},
	} {
		a := e.token(t, c.p, c.c)
		if a.Status != 200 || a.JSON["expires_in"] != c.want {
			t.Fatalf("%v: %d %s, want expires_in %v", c.p, a.Status, a.Raw, c.want)
		}
		cl := claims(t, a.str("access_token"))
		if cl["exp"].(float64)-cl["iat"].(float64) != c.want {
			t.Fatalf("%v: exp-iat = %v", c.p, cl["exp"].(float64)-cl["iat"].(float64))
		}
	}
}
