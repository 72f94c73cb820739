package identity

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var key = bytes.Repeat([]byte{7}, 32)

func signed(t *testing.T, k []byte, method, target string, at time.Time, p Principal) (string, string) {
	t.Helper()
	doc, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	ph := EncodePrincipal(doc)
	return ph, Sign(k, method, target, at, NewNonce(), ph)
}

func TestVerifyRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v, err := NewVerifier(key)
	if err != nil {
		t.Fatal(err)
	}
	v.Now = func() time.Time { return now }
	p := Principal{Dialect: "jackpot", Means: "jackpot.session", Client: "cl_1", Subject: "ü-ser \"quoted\"",
		Scopes: []string{"a"}, Claims: map[string]any{"amount": 12.5, "notificationKey": "n-1"}}
	ph, sh := signed(t, key, "POST", "/v2/x?y=1", now, p)
	got, err := v.VerifyValues("POST", "/v2/x?y=1", ph, sh)
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != p.Subject || got.Client != "cl_1" || got.Claims["amount"] != json.Number("12.5") || !got.HasScope("a") {
		t.Fatalf("%+v", got)
	}
	for _, c := range []struct {
		name, method, target, ph, sh string
		want                         error
	}{
		{"other method", "GET", "/v2/x?y=1", ph, sh, ErrSignature},
		{"other path", "POST", "/v2/z?y=1", ph, sh, ErrSignature},
		{"other query", "POST", "/v2/x?y=2", ph, sh, ErrSignature},
		{"other principal", "POST", "/v2/x?y=1", EncodePrincipal([]byte(`{"dialect":"x","means":"y"}`)), sh, ErrSignature},
		{"missing", "POST", "/v2/x?y=1", "", sh, ErrMissing},
		{"garbage signature", "POST", "/v2/x?y=1", ph, "nope", ErrMalformed},
		{"repeated field", "POST", "/v2/x?y=1", ph, sh + ",t=1", ErrMalformed},
		{"unknown field", "POST", "/v2/x?y=1", ph, sh + ",x=1", ErrMalformed},
	} {
		if _, err := v.VerifyValues(c.method, c.target, c.ph, c.sh); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	other := bytes.Repeat([]byte{8}, 32)
	ph2, sh2 := signed(t, other, "POST", "/p", now, p)
	if _, err := v.VerifyValues("POST", "/p", ph2, sh2); !errors.Is(err, ErrSignature) {
		t.Errorf("wrong key: %v", err)
	}
	// During a rotation the upstream accepts both keys.
	v2, _ := NewVerifier(key, other)
	v2.Now = v.Now
	if _, err := v2.VerifyValues("POST", "/p", ph2, sh2); err != nil {
		t.Errorf("second key: %v", err)
	}
}

func TestTimestampWindowAndReplay(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v, _ := NewVerifier(key)
	v.Now = func() time.Time { return now }
	v.MaxSkew = 30 * time.Second
	for _, c := range []struct {
		at time.Time
		ok bool
	}{
		{now.Add(-30 * time.Second), true}, {now.Add(30 * time.Second), true},
		{now.Add(-31 * time.Second), false}, {now.Add(31 * time.Second), false},
	} {
		ph, sh := signed(t, key, "GET", "/", c.at, Principal{Dialect: "d", Means: "m"})
		_, err := v.VerifyValues("GET", "/", ph, sh)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrStale)) {
			t.Errorf("at %v: %v", c.at.Sub(now), err)
		}
	}
	v.Replay = NewMemoryReplayCache(10)
	ph, sh := signed(t, key, "GET", "/", now, Principal{Dialect: "d", Means: "m"})
	if _, err := v.VerifyValues("GET", "/", ph, sh); err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyValues("GET", "/", ph, sh); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replay: %v", err)
	}
}

func TestMemoryReplayCacheFailsClosedWhenFull(t *testing.T) {
	c := NewMemoryReplayCache(2)
	now := time.Unix(100, 0)
	c.now = func() time.Time { return now }
	if c.Seen("a", now.Add(time.Minute)) || c.Seen("b", now.Add(time.Second)) {
		t.Fatal("fresh nonces reported seen")
	}
	if !c.Seen("c", now.Add(time.Minute)) {
		t.Fatal("full of live nonces: must refuse")
	}
	now = now.Add(2 * time.Second) // b expired
	if c.Seen("c", now.Add(time.Minute)) {
		t.Fatal("expired entries must make room")
	}
}

func TestShortKeysRefused(t *testing.T) {
	if _, err := NewVerifier(make([]byte, 31)); err == nil {
		t.Fatal("31-byte key accepted")
	}
	if _, err := NewVerifier(); err == nil {
		t.Fatal("no key accepted")
	}
	std := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))
	if _, err := NewVerifierBase64(std); err != nil {
		t.Fatalf("standard base64: %v", err)
	}
	if _, err := NewVerifierBase64(base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))); err != nil {
		t.Fatalf("url base64: %v", err)
	}
}

func TestMiddleware(t *testing.T) {
	v, _ := NewVerifier(key)
	var got *Principal
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = FromContext(r.Context())
	}))
	req := httptest.NewRequest("GET", "/orders?x=1", nil)
	ph, sh := signed(t, key, "GET", "/orders?x=1", time.Now(), Principal{Dialect: "doshii", Means: "doshii.venue", Location: "L1"})
	req.Header.Set(HeaderPrincipal, ph)
	req.Header.Set(HeaderSignature, sh)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || got == nil || got.Location != "L1" {
		t.Fatalf("%d %+v", rec.Code, got)
	}
	req.Header.Add(HeaderPrincipal, ph) // repeated header: refused
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 401 || !strings.Contains(rec.Body.String(), "gateway") {
		t.Fatalf("repeated header: %d", rec.Code)
	}
}

func TestDecodePrincipalRefusesJunk(t *testing.T) {
	for _, s := range []string{"", "!!", EncodePrincipal([]byte(`{"a":1} {}`)), EncodePrincipal([]byte(`[1]`)),
		base64.RawURLEncoding.EncodeToString([]byte(`{}`)) + "=", strings.Repeat("A", MaxHeaderBytes+1)} {
		if _, err := DecodePrincipal(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestSignerNoncesAreUniqueAndVerify(t *testing.T) {
	s, err := NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := NewSigner(key)
	v, _ := NewVerifier(key)
	v.Replay = NewMemoryReplayCache(0)
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		for _, sg := range []*Signer{s, s2} {
			sig := sg.Sign("GET", "/x", time.Now(), EncodePrincipal([]byte(`{"dialect":"d","means":"m"}`)))
			if _, err := v.VerifyValues("GET", "/x", EncodePrincipal([]byte(`{"dialect":"d","means":"m"}`)), sig); err != nil {
				t.Fatalf("signer %d: %v", i, err)
			}
			_, n, _, err := ParseSignature(sig)
			if err != nil {
				t.Fatal(err)
			}
			if seen[n] {
				t.Fatalf("nonce %q repeated", n)
			}
			seen[n] = true
		}
	}
	if _, err := NewSigner(key[:31]); err == nil {
		t.Fatal("short key accepted")
	}
}
