package chimpy_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/posgate/posgate/client/chimpy"
	"github.com/posgate/posgate/client/tokensource"
)

// auth0 is a small fake of Auth0's /oauth/token where it differs from posgate: JSON bodies,
// a one-day expires_in and an id_token; refresh token rotation that can be off (the refresh
// answer then carries no refresh_token and the old one stays valid); rate limiting with
// X-RateLimit-Reset instead of Retry-After.
type auth0 struct {
	srv      *httptest.Server
	rotate   bool
	limited  atomic.Int64 // when set, answer 429 until this epoch second
	requests atomic.Int64

	mu     sync.Mutex
	family map[string]string // refresh token → family
	spent  map[string]bool
	dead   map[string]bool // revoked families
}

func newAuth0(t *testing.T, rotate bool) *auth0 {
	a := &auth0{rotate: rotate, family: map[string]string{}, spent: map[string]bool{}, dead: map[string]bool{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.token))
	t.Cleanup(a.srv.Close)
	return a
}

func rnd() string { var b [16]byte; rand.Read(b[:]); return hex.EncodeToString(b[:]) }

func (a *auth0) token(w http.ResponseWriter, r *http.Request) {
	a.requests.Add(1)
	w.Header().Set("Content-Type", "application/json")
	fail := func(st int, code, desc string) {
		w.WriteHeader(st)
		json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
	}
	if reset := a.limited.Load(); reset > 0 {
		w.Header().Set("X-RateLimit-Limit", "10")
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset, 10))
		fail(429, "too_many_requests", "Global limit has been reached")
		return
	}
	if r.Header.Get("Content-Type") != "application/json" {
		fail(400, "invalid_request", "this fake takes JSON, as chimpy documents")
		return
	}
	var b map[string]string
	if json.NewDecoder(r.Body).Decode(&b) != nil || b["client_id"] != "app" || b["client_secret"] != "s3cret" {
		fail(401, "access_denied", "Unauthorized")
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var fam string
	switch b["grant_type"] {
	case "password":
		if b["username"] != "ann" || b["password"] != "pw" {
			fail(403, "invalid_grant", "Wrong email or password.")
			return
		}
		if b["audience"] != audience {
			fail(403, "access_denied", "Service not found: "+b["audience"])
			return
		}
		fam = rnd()
	case "refresh_token":
		rt := b["refresh_token"]
		fam = a.family[rt]
		if fam == "" || a.dead[fam] {
			fail(403, "invalid_grant", "Unknown or invalid refresh token.")
			return
		}
		if a.spent[rt] { // reuse of a rotated token: the whole family is revoked
			a.dead[fam] = true
			fail(403, "invalid_grant", "Unknown or invalid refresh token.")
			return
		}
		if !a.rotate {
			json.NewEncoder(w).Encode(map[string]any{"access_token": rnd(), "id_token": rnd(), "expires_in": 86400, "token_type": "Bearer", "scope": "openid offline_access"})
			return
		}
		a.spent[rt] = true
	default:
		fail(403, "unsupported_grant_type", "Unsupported grant type: "+b["grant_type"])
		return
	}
	rt := rnd()
	a.family[rt] = fam
	json.NewEncoder(w).Encode(map[string]any{"access_token": rnd(), "refresh_token": rt, "id_token": rnd(), "expires_in": 86400, "token_type": "Bearer", "scope": "openid offline_access"})
}

func (a *auth0) config(clk *fakeClock) chimpy.Config {
	return chimpy.Config{TokenURL: a.srv.URL + "/oauth/token", ClientID: "app", ClientSecret: "s3cret", Audience: audience,
		Scopes: []string{"openid", "offline_access"}, Username: "ann", Password: "pw",
		Options: tokensource.Options{Now: clk.Now}}
}

func TestAuth0WithoutRotationKeepsTheRefreshToken(t *testing.T) {
	a := newAuth0(t, false)
	clk := newClock(time.Now())
	var saved *oauth2.Token
	cfg := a.config(clk)
	cfg.Persist = func(_ context.Context, tok *oauth2.Token) error { saved = tok; return nil }
	src := cfg.TokenSource(context.Background())
	t1, err := src.Token()
	if err != nil || t1.Expiry.Sub(clk.Now()) != 24*time.Hour || t1.Extra("id_token") == nil {
		t.Fatalf("sign-in: %v %v", t1, err)
	}
	clk.Advance(24*time.Hour - 30*time.Second)
	t2, err := src.Token()
	if err != nil || t2.AccessToken == t1.AccessToken || t2.RefreshToken != t1.RefreshToken || saved.RefreshToken != t1.RefreshToken {
		t.Fatalf("refresh without rotation: %v", err)
	}
}

func TestAuth0ReuseFallsBackToPassword(t *testing.T) {
	a := newAuth0(t, true)
	clk := newClock(time.Now())
	cfg := a.config(clk)
	first := cfg.TokenSource(context.Background())
	t1, err := first.Token()
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(24 * time.Hour)
	if _, err := first.Token(); err != nil { // rotates
		t.Fatal(err)
	}
	// A client restarted from the spent token (nothing persisted) is refused with Auth0's 403
	// and signs in again with the password rather than failing.
	cfg.Token = t1
	n := a.requests.Load()
	t3, err := cfg.TokenSource(context.Background()).Token()
	if err != nil || a.requests.Load()-n != 2 {
		t.Fatalf("fallback: %v, %d requests (want refresh + password)", err, a.requests.Load()-n)
	}
	// Without a password the refusal is the caller's to handle.
	cfg.Username, cfg.Token = "", t1
	_, err = cfg.TokenSource(context.Background()).Token()
	if !chimpy.Expired(err) {
		t.Fatalf("reuse without a password: %v", err)
	}
	_ = t3
}

func TestAuth0RateLimitReset(t *testing.T) {
	a := newAuth0(t, true)
	clk := newClock(time.Now())
	src := a.config(clk).TokenSource(context.Background())
	a.limited.Store(time.Now().Add(2 * time.Minute).Unix())
	if _, err := src.Token(); tokensource.ErrorCode(err) != "too_many_requests" {
		t.Fatalf("rate limited: %v", err)
	}
	// The back-off follows X-RateLimit-Reset (2 min), not the 1 s first step.
	clk.Advance(90 * time.Second)
	for range 20 {
		src.Token()
	}
	if n := a.requests.Load(); n != 1 {
		t.Fatalf("%d requests before the rate limit reset", n)
	}
	a.limited.Store(0)
	clk.Advance(31 * time.Second)
	if _, err := src.Token(); err != nil || a.requests.Load() != 2 {
		t.Fatalf("after the reset: %v, %d requests", err, a.requests.Load())
	}
}
