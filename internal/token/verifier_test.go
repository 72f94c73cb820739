package token

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/keys"
	"github.com/posgate/posgate/internal/store"
)

var ctx = context.Background()

func TestIssueAndVerify(t *testing.T) {
	for _, alg := range []string{keys.AlgEdDSA, keys.AlgES256, keys.AlgRS256} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, alg)
			raw, signed := e.issue(t, Claims{
				Subject: "us_1", Audience: []string{"api"}, ClientID: "cl_1", Scope: "read write",
				SessionID: "fam_1", Extra: map[string]any{"gty": "password", "amount": 12.5, "nested": map[string]any{"a": []any{1, "x"}}},
				Issuer: "ignored", IssuedAt: t0.Add(-time.Hour), ExpiresAt: t0.Add(100 * time.Hour),
			}, time.Hour+500*time.Millisecond)
			if signed.Issuer != testIssuer || !signed.IssuedAt.Equal(t0) || !signed.ExpiresAt.Equal(t0.Add(time.Hour)) {
				t.Fatalf("Issue filled iss=%q iat=%v exp=%v", signed.Issuer, signed.IssuedAt, signed.ExpiresAt)
			}
			jti, err := base64.RawURLEncoding.Strict().DecodeString(signed.JTI)
			if err != nil || len(jti) != 16 {
				t.Fatalf("jti %q is not 128 bits of base64url", signed.JTI)
			}

			// The wire form: header and registered claims exactly as RFC 9068 wants them.
			parts := strings.Split(raw, ".")
			hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
			want := `{"alg":"` + alg + `","kid":"` + e.activeKID(t) + `","typ":"at+jwt"}`
			if string(hdr) != want {
				t.Fatalf("header %s, want %s", hdr, want)
			}
			pl, _ := base64.RawURLEncoding.DecodeString(parts[1])
			var m map[string]any
			if err := json.Unmarshal(pl, &m); err != nil {
				t.Fatal(err)
			}
			for k, v := range map[string]any{"iss": testIssuer, "sub": "us_1", "aud": "api", "client_id": "cl_1",
				"scope": "read write", "jti": signed.JTI, "iat": float64(t0.Unix()), "exp": float64(t0.Unix() + 3600),
				"sid": "fam_1", "gty": "password", "amount": 12.5} {
				if !reflect.DeepEqual(m[k], v) {
					t.Errorf("payload %s = %#v, want %#v", k, m[k], v)
				}
			}
			if _, ok := m["nbf"]; ok {
				t.Error("nbf written although not set")
			}

			got, err := e.v.Verify(ctx, raw, VerifyOptions{Audience: "api"})
			if err != nil {
				t.Fatal(err)
			}
			if got.Subject != "us_1" || got.ClientID != "cl_1" || got.Scope != "read write" || got.SessionID != "fam_1" ||
				got.JTI != signed.JTI || !got.IssuedAt.Equal(signed.IssuedAt) || !got.ExpiresAt.Equal(signed.ExpiresAt) ||
				!reflect.DeepEqual(got.Audience, []string{"api"}) || got.Issuer != testIssuer {
				t.Fatalf("verified claims %+v differ from signed %+v", got, signed)
			}
			if got.Extra["gty"] != "password" || got.Extra["amount"] != json.Number("12.5") {
				t.Fatalf("extra claims %#v", got.Extra)
			}
			if nested, _ := got.Extra["nested"].(map[string]any); !reflect.DeepEqual(nested, map[string]any{"a": []any{json.Number("1"), "x"}}) {
				t.Fatalf("nested extra claim %#v", got.Extra["nested"])
			}
			// Any audience when the caller names none; several audiences as an array.
			if _, err := e.v.Verify(ctx, raw, VerifyOptions{}); err != nil {
				t.Fatal(err)
			}
			raw2, _ := e.issue(t, Claims{Subject: "s", Audience: []string{"a", "b"}, NotBefore: t0.Add(-time.Minute)}, time.Minute)
			c2, err := e.v.Verify(ctx, raw2, VerifyOptions{Audience: "b"})
			if err != nil || !reflect.DeepEqual(c2.Audience, []string{"a", "b"}) || !c2.NotBefore.Equal(t0.Add(-time.Minute)) {
				t.Fatalf("two audiences: %+v, %v", c2, err)
			}
		})
	}
}

func TestIssueRefuses(t *testing.T) {
	e := newEnv(t, keys.AlgEdDSA)
	for name, c := range map[string]struct {
		claims   Claims
		lifetime time.Duration
	}{
		"registered name in Extra":        {Claims{Extra: map[string]any{"exp": 1}}, time.Hour},
		"registered name, other case":     {Claims{Extra: map[string]any{"Sub": "x"}}, time.Hour},
		"Extra keys equal up to case":     {Claims{Extra: map[string]any{"amount": 1, "Amount": 2}}, time.Hour},
		"nested keys equal up to case":    {Claims{Extra: map[string]any{"n": map[string]any{"a": 1, "A": 2}}}, time.Hour},
		"unencodable Extra":               {Claims{Extra: map[string]any{"f": func() {}}}, time.Hour},
		"lifetime over the keyring's max": {Claims{}, testMaxLifetime + time.Second},
		"zero lifetime":                   {Claims{}, 0},
		"token over MaxTokenBytes":        {Claims{Extra: map[string]any{"big": strings.Repeat("x", MaxTokenBytes)}}, time.Hour},
	} {
		if raw, _, err := e.iss.Issue(ctx, c.claims, c.lifetime); err == nil {
			t.Errorf("%s: issued %q", name, raw)
		}
	}
	// An explicit JTI is kept.
	_, c := e.issue(t, Claims{JTI: "chosen"}, time.Minute)
	if c.JTI != "chosen" {
		t.Fatalf("JTI %q", c.JTI)
	}
}

// Every Reason, each from a token whose only defect is the one under test.
func TestVerifyReasons(t *testing.T) {
	e := newEnv(t, keys.AlgEdDSA)
	kid := e.activeKID(t)
	good := e.sign(t, e.header(t, nil), e.payload(nil))
	if _, err := e.v.Verify(ctx, good, VerifyOptions{Audience: "api"}); err != nil {
		t.Fatalf("the baseline token is refused: %v", err)
	}
	parts := strings.Split(good, ".")
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	pub, _ := e.kr.Lookup(kid)
	now := t0.Unix()

	cases := []reasonCase{
		// Structure.
		{"empty", "", VerifyOptions{}, ReasonMalformed},
		{"one segment", "abc", VerifyOptions{}, ReasonMalformed},
		{"two segments", parts[0] + "." + parts[1], VerifyOptions{}, ReasonMalformed},
		{"four segments", good + ".x", VerifyOptions{}, ReasonMalformed},
		{"empty header segment", "." + parts[1] + "." + parts[2], VerifyOptions{}, ReasonMalformed},
		{"empty payload segment", parts[0] + ".." + parts[2], VerifyOptions{}, ReasonMalformed},
		{"too large", strings.Repeat("a", MaxTokenBytes+1), VerifyOptions{}, ReasonTooLarge},
		{"too large, well formed", parts[0] + "." + strings.Repeat("A", MaxTokenBytes) + "." + parts[2], VerifyOptions{}, ReasonTooLarge},

		// Encoding and JSON.
		{"padded header", parts[0] + "=." + parts[1] + "." + parts[2], VerifyOptions{}, ReasonJSON},
		{"standard alphabet", strings.ReplaceAll(parts[0], "-", "+") + "+." + parts[1] + "." + parts[2], VerifyOptions{}, ReasonJSON},
		{"newline in segment", parts[0][:4] + "\n" + parts[0][4:] + "." + parts[1] + "." + parts[2], VerifyOptions{}, ReasonJSON},
		{"bad base64 signature", parts[0] + "." + parts[1] + ".!!", VerifyOptions{}, ReasonJSON},
		{"header not JSON", enc("alg:EdDSA") + "." + parts[1] + "." + parts[2], VerifyOptions{}, ReasonJSON},
		{"header an array", enc(`["alg","EdDSA"]`) + "." + parts[1] + "." + parts[2], VerifyOptions{}, ReasonJSON},
		{"header duplicate alg", enc(`{"alg":"EdDSA","kid":"`+kid+`","typ":"at+jwt","alg":"none"}`) + "." + parts[1] + "." + parts[2], VerifyOptions{}, ReasonJSON},
		{"header duplicate alg, other case", enc(`{"alg":"EdDSA","ALG":"none","kid":"`+kid+`"}`) + "." + parts[1] + "." + parts[2], VerifyOptions{}, ReasonJSON},
		{"header trailing data", enc(e.header(t, nil)+"{}") + "." + parts[1] + "." + parts[2], VerifyOptions{}, ReasonJSON},
		{"crit header", e.sign(t, e.header(t, map[string]any{"crit": []string{"exp"}, "exp": 1}), e.payload(nil)), VerifyOptions{}, ReasonJSON},
		{"kid not a string", e.sign(t, e.header(t, map[string]any{"kid": 7}), e.payload(nil)), VerifyOptions{}, ReasonJSON},
		{"signed payload not JSON", e.sign(t, e.header(t, nil), "not json"), VerifyOptions{}, ReasonJSON},
		{"signed payload duplicate exp", e.sign(t, e.header(t, nil), strings.Replace(e.payload(nil), `"exp":`, `"exp":1,"exp":`, 1)), VerifyOptions{}, ReasonJSON},

		// Algorithm.
		{"no alg", e.sign(t, e.header(t, map[string]any{"alg": nil}), e.payload(nil)), VerifyOptions{}, ReasonMissingAlg},
		{"alg empty", e.sign(t, `{"alg":"","kid":"`+kid+`","typ":"at+jwt"}`, e.payload(nil)), VerifyOptions{}, ReasonMissingAlg},
		{"alg null", e.sign(t, `{"alg":null,"kid":"`+kid+`","typ":"at+jwt"}`, e.payload(nil)), VerifyOptions{}, ReasonMissingAlg},
		{"alg in other case only", e.sign(t, `{"ALG":"EdDSA","kid":"`+kid+`","typ":"at+jwt"}`, e.payload(nil)), VerifyOptions{}, ReasonMissingAlg},
		{"alg none", e.header(t, map[string]any{"alg": "none"}), VerifyOptions{}, ReasonAlg}, // replaced below
		{"alg not a string", e.sign(t, e.header(t, map[string]any{"alg": 1}), e.payload(nil)), VerifyOptions{}, ReasonAlg},
		{"alg lowercase", e.sign(t, e.header(t, map[string]any{"alg": "eddsa"}), e.payload(nil)), VerifyOptions{}, ReasonAlg},
		{"alg ES256 on an EdDSA key", e.sign(t, e.header(t, map[string]any{"alg": "ES256"}), e.payload(nil)), VerifyOptions{}, ReasonAlg},
		{"alg HS256", e.header(t, map[string]any{"alg": "HS256"}), VerifyOptions{}, ReasonAlg}, // replaced below

		// Keys.
		{"no kid", e.sign(t, e.header(t, map[string]any{"kid": nil}), e.payload(nil)), VerifyOptions{}, ReasonUnknownKey},
		{"unknown kid", e.sign(t, e.header(t, map[string]any{"kid": "nope"}), e.payload(nil)), VerifyOptions{}, ReasonUnknownKey},

		// Signature.
		{"signature flipped", parts[0] + "." + parts[1] + "." + flip(parts[2]), VerifyOptions{}, ReasonSignature},
		{"signature empty", parts[0] + "." + parts[1] + ".", VerifyOptions{}, ReasonSignature},
		{"signature of another payload", parts[0] + "." + enc(e.payload(map[string]any{"sub": "admin"})) + "." + parts[2], VerifyOptions{}, ReasonSignature},
		{"signature truncated", parts[0] + "." + parts[1] + "." + parts[2][:40], VerifyOptions{}, ReasonSignature},

		// Time.
		{"expired", e.sign(t, e.header(t, nil), e.payload(map[string]any{"exp": now - 1})), VerifyOptions{}, ReasonExpired},
		{"expires now", e.sign(t, e.header(t, nil), e.payload(map[string]any{"exp": now})), VerifyOptions{}, ReasonExpired},
		{"expired beyond leeway", e.sign(t, e.header(t, nil), e.payload(map[string]any{"exp": now - 31})), VerifyOptions{Leeway: 30 * time.Second}, ReasonExpired},
		{"expired beyond renewal window", e.sign(t, e.header(t, nil), e.payload(map[string]any{"exp": now - 3601})), VerifyOptions{AllowExpiredFor: time.Hour}, ReasonExpired},
		{"nbf in the future", e.sign(t, e.header(t, nil), e.payload(map[string]any{"nbf": now + 1})), VerifyOptions{}, ReasonNotYetValid},
		{"iat in the future", e.sign(t, e.header(t, nil), e.payload(map[string]any{"iat": now + 1})), VerifyOptions{}, ReasonNotYetValid},
		{"iat beyond leeway", e.sign(t, e.header(t, nil), e.payload(map[string]any{"iat": now + 31})), VerifyOptions{Leeway: 30 * time.Second}, ReasonNotYetValid},

		// Order: time checks come before the claim checks.
		{"expired and other issuer", e.sign(t, e.header(t, nil), e.payload(map[string]any{"exp": now - 1, "iss": "https://evil.test"})), VerifyOptions{}, ReasonExpired},
		{"not yet valid and no typ", e.sign(t, e.header(t, map[string]any{"typ": nil}), e.payload(map[string]any{"nbf": now + 60})), VerifyOptions{}, ReasonNotYetValid},
		{"expired and other audience", e.sign(t, e.header(t, nil), e.payload(map[string]any{"exp": now - 1})), VerifyOptions{Audience: "other"}, ReasonExpired},

		// Claims.
		{"other issuer", e.sign(t, e.header(t, nil), e.payload(map[string]any{"iss": "https://evil.test"})), VerifyOptions{}, ReasonClaims},
		{"no issuer", e.sign(t, e.header(t, nil), e.payload(map[string]any{"iss": nil})), VerifyOptions{}, ReasonClaims},
		{"other audience", good, VerifyOptions{Audience: "other"}, ReasonClaims},
		{"no audience", e.sign(t, e.header(t, nil), e.payload(map[string]any{"aud": nil})), VerifyOptions{Audience: "api"}, ReasonClaims},
		{"no typ", e.sign(t, e.header(t, map[string]any{"typ": nil}), e.payload(nil)), VerifyOptions{}, ReasonClaims},
		{"typ JWT", e.sign(t, e.header(t, map[string]any{"typ": "JWT"}), e.payload(nil)), VerifyOptions{}, ReasonClaims},
		{"no exp", e.sign(t, e.header(t, nil), e.payload(map[string]any{"exp": nil})), VerifyOptions{}, ReasonClaims},
		{"no iat", e.sign(t, e.header(t, nil), e.payload(map[string]any{"iat": nil})), VerifyOptions{}, ReasonClaims},
		{"no jti", e.sign(t, e.header(t, nil), e.payload(map[string]any{"jti": nil})), VerifyOptions{}, ReasonClaims},
		{"exp a string", e.sign(t, e.header(t, nil), e.payload(map[string]any{"exp": "9999999999"})), VerifyOptions{}, ReasonClaims},
		{"exp negative", e.sign(t, e.header(t, nil), e.payload(map[string]any{"exp": -1})), VerifyOptions{}, ReasonClaims},
		{"exp beyond year 9999", e.sign(t, e.header(t, nil), e.payload(map[string]any{"exp": 1e15})), VerifyOptions{}, ReasonClaims},
		{"sub a number", e.sign(t, e.header(t, nil), e.payload(map[string]any{"sub": 5})), VerifyOptions{}, ReasonClaims},
		{"jti null", e.sign(t, e.header(t, nil), e.payload(map[string]any{"jti": nil, "JTI_": 1}) /* jti removed */), VerifyOptions{}, ReasonClaims},
		{"aud a number", e.sign(t, e.header(t, nil), e.payload(map[string]any{"aud": 5})), VerifyOptions{}, ReasonClaims},
		{"aud an array with a number", e.sign(t, e.header(t, nil), e.payload(map[string]any{"aud": []any{"api", 5}})), VerifyOptions{}, ReasonClaims},
		{"registered claim in other case", e.sign(t, e.header(t, nil), e.payload(map[string]any{"exp": nil, "EXP": now + 3600})), VerifyOptions{}, ReasonClaims},
	}
	// alg none: an unsigned token naming a real kid.
	cases[indexOf(cases, "alg none")].raw = enc(e.header(t, map[string]any{"alg": "none"})) + "." + enc(e.payload(nil)) + "."
	// Algorithm confusion: HS256 "signed" with the Ed25519 public key as the HMAC secret.
	hs := enc(e.header(t, map[string]any{"alg": "HS256"})) + "." + enc(e.payload(nil))
	mac := hmac.New(sha256.New, pub.Key().(ed25519.PublicKey))
	mac.Write([]byte(hs))
	cases[indexOf(cases, "alg HS256")].raw = hs + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))

	seen := map[Reason]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.v.Verify(ctx, c.raw, c.opts)
			wantReason(t, err, c.reason)
			seen[c.reason] = true
			if strings.Contains(err.Error(), c.raw) && c.raw != "" {
				t.Fatal("the error repeats the token")
			}
		})
	}

	// Revoked, by jti and by sid.
	rj := e.sign(t, e.header(t, nil), e.payload(map[string]any{"jti": "revoke-me"}))
	rs := e.sign(t, e.header(t, nil), e.payload(map[string]any{"jti": "other", "sid": "fam-9"}))
	for _, raw := range []string{rj, rs} {
		if _, err := e.v.Verify(ctx, raw, VerifyOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	exp := t0.Add(time.Hour)
	if err := e.v.Revoke(ctx, RevokeJTI, "revoke-me", exp, "test"); err != nil {
		t.Fatal(err)
	}
	if err := e.v.Revoke(ctx, RevokeSID, "fam-9", exp, "test"); err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{rj, rs} {
		_, err := e.v.Verify(ctx, raw, VerifyOptions{})
		wantReason(t, err, ReasonRevoked)
		seen[ReasonRevoked] = true
	}
	for r := ReasonMalformed; r <= ReasonRevoked; r++ {
		if !seen[r] {
			t.Errorf("no test case for reason %v", r)
		}
	}
}

type reasonCase struct {
	name   string
	raw    string
	opts   VerifyOptions
	reason Reason
}

func indexOf(cases []reasonCase, name string) int {
	for i, c := range cases {
		if c.name == name {
			return i
		}
	}
	panic("no case " + name)
}

func flip(seg string) string {
	b, _ := base64.RawURLEncoding.DecodeString(seg)
	b[0] ^= 1
	return base64.RawURLEncoding.EncodeToString(b)
}

// Leeway and the renewal window accept what they should, no more (the boundaries of the cases
// above).
func TestVerifyLeewayAndRenewal(t *testing.T) {
	e := newEnv(t, keys.AlgEdDSA)
	now := t0.Unix()
	ok := func(payload map[string]any, opts VerifyOptions) {
		t.Helper()
		if _, err := e.v.Verify(ctx, e.sign(t, e.header(t, nil), e.payload(payload)), opts); err != nil {
			t.Fatalf("%v with %+v: %v", payload, opts, err)
		}
	}
	ok(map[string]any{"exp": now - 29}, VerifyOptions{Leeway: 30 * time.Second})
	ok(map[string]any{"iat": now + 30, "nbf": now + 30}, VerifyOptions{Leeway: 30 * time.Second})
	ok(map[string]any{"exp": now - 3599}, VerifyOptions{AllowExpiredFor: time.Hour})
	ok(map[string]any{"exp": now + 1, "iat": now, "nbf": now}, VerifyOptions{})
	ok(map[string]any{"exp": float64(now) + 0.5}, VerifyOptions{}) // NumericDate may have a fraction
	c, err := e.v.Verify(ctx, e.sign(t, e.header(t, nil), e.payload(map[string]any{"exp": now - 100})), VerifyOptions{AllowExpiredFor: time.Hour})
	if err != nil || !c.ExpiresAt.Equal(t0.Add(-100*time.Second)) {
		t.Fatalf("renewal: claims %+v, %v (ExpiresAt must stay the real one)", c, err)
	}
	// typ in its media-type form, any case.
	for _, typ := range []string{"AT+JWT", "application/at+jwt"} {
		if _, err := e.v.Verify(ctx, e.sign(t, e.header(t, map[string]any{"typ": typ}), e.payload(nil)), VerifyOptions{}); err != nil {
			t.Fatalf("typ %q: %v", typ, err)
		}
	}
}

func TestVerifyCache(t *testing.T) {
	e := newEnv(t, keys.AlgEdDSA)
	raw, _ := e.issue(t, Claims{Subject: "s", Audience: []string{"api"}, SessionID: "fam"}, time.Hour)
	if n := e.v.cache.len(); n != 0 {
		t.Fatalf("cache holds %d entries before any verification", n)
	}
	for range 3 {
		if _, err := e.v.Verify(ctx, raw, VerifyOptions{Audience: "api"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.v.cache.len(); n != 1 {
		t.Fatalf("cache holds %d entries, want 1", n)
	}
	// The returned claims are the caller's own: changing them does not change the next answer.
	c, _ := e.v.Verify(ctx, raw, VerifyOptions{})
	c.Subject, c.JTI = "changed", "changed"
	if c2, _ := e.v.Verify(ctx, raw, VerifyOptions{}); c2.Subject != "s" {
		t.Fatal("a caller's change leaked into the cache")
	}
	// Per-call checks still run on a hit: audience, leeway, revocation, expiry.
	_, err := e.v.Verify(ctx, raw, VerifyOptions{Audience: "other"})
	wantReason(t, err, ReasonClaims)
	// Refused tokens are never cached.
	rp := strings.Split(raw, ".")
	bad := rp[0] + "." + rp[1] + "." + flip(rp[2])
	for range 2 {
		_, err := e.v.Verify(ctx, bad, VerifyOptions{})
		wantReason(t, err, ReasonSignature)
	}
	if n := e.v.cache.len(); n != 1 {
		t.Fatalf("cache holds %d entries after refused tokens, want 1", n)
	}
	e.clk.Advance(time.Hour - time.Second)
	if _, err := e.v.Verify(ctx, raw, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Second)
	_, err = e.v.Verify(ctx, raw, VerifyOptions{})
	wantReason(t, err, ReasonExpired)
	if _, err := e.v.Verify(ctx, raw, VerifyOptions{Leeway: time.Second}); err != nil {
		t.Fatalf("leeway on a cached token: %v", err)
	}
	e.clk.Set(t0)
	if err := e.v.Revoke(ctx, RevokeSID, "fam", t0.Add(time.Hour), "test"); err != nil {
		t.Fatal(err)
	}
	_, err = e.v.Verify(ctx, raw, VerifyOptions{})
	wantReason(t, err, ReasonRevoked)

	// A bounded cache stays bounded.
	e.v.SetCacheSize(cacheShards * 4)
	for i := range 200 {
		r, _ := e.issue(t, Claims{Subject: "s", JTI: "j" + string(rune('a'+i%26)) + strings.Repeat("x", i)}, time.Hour)
		if _, err := e.v.Verify(ctx, r, VerifyOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.v.cache.len(); n > cacheShards*4 {
		t.Fatalf("cache grew to %d entries, bound %d", n, cacheShards*4)
	}
	// Disabled: every verification is a full one, with the same answers.
	e.v.SetCacheSize(0)
	if _, err := e.v.Verify(ctx, raw, VerifyOptions{}); !errors.As(err, new(*VerifyError)) {
		t.Fatalf("uncached verification of a revoked token: %v", err)
	}
}

// Rotation keeps tokens signed with the old key valid until they expire; once the retired key's
// publication ends, its kid is unknown even to a verifier that accepts expired tokens.
func TestRotationKeepsOldTokensValid(t *testing.T) {
	e := newEnv(t, keys.AlgEdDSA)
	oldKID := e.activeKID(t)
	old, _ := e.issue(t, Claims{Subject: "s"}, 2*time.Hour)
	e.clk.Advance(time.Minute)
	if err := e.kr.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if e.activeKID(t) == oldKID {
		t.Fatal("rotation did not change the active key")
	}
	fresh, _ := e.issue(t, Claims{Subject: "s"}, time.Hour)
	for _, raw := range []string{old, fresh} {
		if _, err := e.v.Verify(ctx, raw, VerifyOptions{}); err != nil {
			t.Fatalf("after rotation: %v", err)
		}
	}
	// A second replica that has not refreshed yet verifies tokens of the new key (it was next).
	e2 := e.replica(t)
	if err := e.kr.Rotate(ctx); err != nil { // the first replica rotates again
		t.Fatal(err)
	}
	newest, _ := e.issue(t, Claims{Subject: "s"}, time.Hour)
	if _, err := e2.v.Verify(ctx, newest, VerifyOptions{}); err != nil {
		t.Fatalf("stale replica refuses a token of the new active key: %v", err)
	}
	// Until its exp the old token stays valid; then it is expired; after the key's publication
	// ends its kid is unknown.
	e.clk.Set(t0.Add(2*time.Hour - time.Second))
	if _, err := e.v.Verify(ctx, old, VerifyOptions{}); err != nil {
		t.Fatalf("old token before its exp: %v", err)
	}
	e.clk.Set(t0.Add(2 * time.Hour))
	_, err := e.v.Verify(ctx, old, VerifyOptions{})
	wantReason(t, err, ReasonExpired)
	e.clk.Set(t0.Add(time.Minute + testMaxLifetime + keys.RetireGrace))
	_, err = e.v.Verify(ctx, old, VerifyOptions{AllowExpiredFor: 1000 * time.Hour})
	wantReason(t, err, ReasonUnknownKey)
	// The same holds for a well-signed, unexpired token naming the dropped kid (e.g. a replica's
	// clock being far behind): unknown key.
}

// A token whose key was retired and has expired is refused as an unknown key even when its own
// exp is in the future (the case a wrong maxTokenLifetime would create).
func TestRetiredExpiredKid(t *testing.T) {
	e := newEnv(t, keys.AlgEdDSA)
	kid := e.activeKID(t)
	longExp := t0.Add(1000 * time.Hour).Unix()
	raw := e.sign(t, e.header(t, nil), e.payload(map[string]any{"exp": longExp}))
	if _, err := e.v.Verify(ctx, raw, VerifyOptions{}); err != nil { // cached now
		t.Fatal(err)
	}
	if err := e.kr.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(testMaxLifetime + keys.RetireGrace)
	if _, ok := e.kr.Lookup(kid); ok {
		t.Fatal("retired key still published after its expiry")
	}
	_, err := e.v.Verify(ctx, raw, VerifyOptions{})
	wantReason(t, err, ReasonUnknownKey)
	if strings.Contains(string(e.kr.JWKS()), kid) {
		t.Fatal("JWKS still lists the expired key")
	}
}

// Revocation is immediate here and, through the shared bus and store, on another replica — even
// for a token that replica has already cached.
func TestRevocationAcrossReplicas(t *testing.T) {
	a := newEnv(t, keys.AlgEdDSA)
	b := a.replica(t)
	raw, c := a.issue(t, Claims{Subject: "s", SessionID: "fam-1"}, time.Hour)
	raw2, c2 := a.issue(t, Claims{Subject: "s", SessionID: "fam-2"}, time.Hour)
	for _, env := range []*env{a, b} {
		for _, r := range []string{raw, raw2} {
			if _, err := env.v.Verify(ctx, r, VerifyOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := a.v.Revoke(ctx, RevokeJTI, c.JTI, c.ExpiresAt, "test"); err != nil {
		t.Fatal(err)
	}
	if err := b.v.Revoke(ctx, RevokeSID, c2.SessionID, c2.ExpiresAt, "test"); err != nil {
		t.Fatal(err)
	}
	for name, env := range map[string]*env{"a": a, "b": b} {
		for _, r := range []string{raw, raw2} {
			_, err := env.v.Verify(ctx, r, VerifyOptions{})
			if err == nil {
				t.Fatalf("replica %s accepts a revoked token", name)
			}
			wantReason(t, err, ReasonRevoked)
		}
	}
	// Durable: a third replica starting later loads both from the store.
	c3 := a.replica(t)
	for _, r := range []string{raw, raw2} {
		_, err := c3.v.Verify(ctx, r, VerifyOptions{})
		wantReason(t, err, ReasonRevoked)
	}
	ok, err := a.st.IsRevoked(ctx, RevokeJTI, c.JTI)
	if err != nil || !ok {
		t.Fatalf("revocation not in the store: %v %v", ok, err)
	}
}

// A revocation that reaches the store without an event (the event was lost, or it was written by
// another tool) is applied by the next resync.
func TestResyncPicksUpRevocationWithoutEvent(t *testing.T) {
	e := newEnv(t, keys.AlgEdDSA)
	raw, c := e.issue(t, Claims{Subject: "s"}, time.Hour)
	if _, err := e.v.Verify(ctx, raw, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(10 * time.Second)
	// Revoked "elsewhere" with a RevokedAt slightly behind this replica's last sync (clock skew).
	if err := e.st.AddRevocation(ctx, store.Revocation{Kind: "jti", Value: c.JTI, RevokedAt: t0.Add(-time.Second),
		ExpiresAt: c.ExpiresAt, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.v.Verify(ctx, raw, VerifyOptions{}); err != nil {
		t.Fatal("revoked before any resync: the test cannot tell the resync did it")
	}
	if err := e.v.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := e.v.Verify(ctx, raw, VerifyOptions{})
	wantReason(t, err, ReasonRevoked)
}

// The resync loop itself runs (a short real interval; we poll for its effect, never sleep for a
// fixed time).
func TestResyncLoop(t *testing.T) {
	e := newEnv(t, keys.AlgEdDSA)
	v := NewVerifier(e.kr, e.st, nil, e.clk, testIssuer, nil)
	v.SetResyncInterval(10 * time.Millisecond)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := v.Start(lctx); err != nil {
		t.Fatal(err)
	}
	if err := v.Start(lctx); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start: %v", err)
	}
	raw, c := e.issue(t, Claims{Subject: "s"}, time.Hour)
	if _, err := v.Verify(ctx, raw, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.AddRevocation(ctx, store.Revocation{Kind: "jti", Value: c.JTI, RevokedAt: t0, ExpiresAt: c.ExpiresAt}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := v.Verify(ctx, raw, VerifyOptions{}); err != nil {
			wantReason(t, err, ReasonRevoked)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the resync loop did not apply the revocation within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRevocationsExpire(t *testing.T) {
	e := newEnv(t, keys.AlgEdDSA)
	if err := e.v.Revoke(ctx, RevokeJTI, "a", t0.Add(time.Minute), ""); err != nil {
		t.Fatal(err)
	}
	if err := e.v.Revoke(ctx, RevokeSID, "b", t0.Add(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	if n := len(e.v.revoked); n != 2 {
		t.Fatalf("%d entries", n)
	}
	e.clk.Advance(time.Minute)
	if err := e.v.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.v.revoked[revKey{"jti", "a"}]; ok || len(e.v.revoked) != 1 {
		t.Fatalf("expired entry kept: %v", e.v.revoked)
	}
	// Revoking something already expired is a no-op, not an error.
	if err := e.v.Revoke(ctx, RevokeJTI, "old", t0, ""); err != nil {
		t.Fatal(err)
	}
}

func TestRevokeRefusesBadInput(t *testing.T) {
	e := newEnv(t, keys.AlgEdDSA)
	for _, c := range []struct{ kind, value string }{{"family", "x"}, {"JTI", "x"}, {"jti", ""}, {"sid", strings.Repeat("x", 257)}} {
		err := e.v.Revoke(ctx, c.kind, c.value, t0.Add(time.Hour), "")
		if errs.KindOf(err) != errs.BadInput {
			t.Errorf("Revoke(%q, %q) = %v, want bad input", c.kind, c.value, err)
		}
	}
	if err := e.v.Revoke(ctx, "jti", "x", time.Time{}, ""); errs.KindOf(err) != errs.BadInput {
		t.Errorf("zero expiry: %v", err)
	}
}

// With the store down, verification (signature, expiry, the in-memory revocation set) still
// works; a revocation still applies locally but reports the store failure.
func TestStoreDown(t *testing.T) {
	e := newEnv(t, keys.AlgEdDSA)
	raw, c := e.issue(t, Claims{Subject: "s"}, time.Hour)
	fresh, _ := e.issue(t, Claims{Subject: "t"}, time.Hour)
	e.st.down.Store(true)
	if _, err := e.v.Verify(ctx, raw, VerifyOptions{}); err != nil {
		t.Fatalf("verify with the store down: %v", err)
	}
	if err := e.v.Resync(ctx); err == nil {
		t.Fatal("resync with the store down succeeded")
	}
	err := e.v.Revoke(ctx, RevokeJTI, c.JTI, c.ExpiresAt, "")
	if errs.KindOf(err) != errs.Unavailable || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("revoke with the store down: %v", err)
	}
	_, err = e.v.Verify(ctx, raw, VerifyOptions{})
	wantReason(t, err, ReasonRevoked)
	if _, err := e.v.Verify(ctx, fresh, VerifyOptions{}); err != nil {
		t.Fatalf("uncached verify with the store down: %v", err)
	}
	e.clk.Advance(time.Hour)
	_, err = e.v.Verify(ctx, fresh, VerifyOptions{})
	wantReason(t, err, ReasonExpired)
}

func TestMalformedRevocationEventIgnored(t *testing.T) {
	e := newEnv(t, keys.AlgEdDSA)
	for _, p := range []string{``, `{`, `{"kind":"family","value":"x","expires_at":"2030-01-01T00:00:00Z"}`, `{"kind":"jti","value":""}`} {
		e.bus.(*events.Local).Deliver("revocation", []byte(p))
	}
	if len(e.v.revoked) != 0 {
		t.Fatalf("malformed events applied: %v", e.v.revoked)
	}
	e.bus.(*events.Local).Deliver("revocation", []byte(`{"kind":"jti","value":"x","expires_at":"2030-01-01T00:00:00Z"}`))
	if len(e.v.revoked) != 1 {
		t.Fatal("a well-formed event was not applied")
	}
}

func TestVerifyErrorText(t *testing.T) {
	e := newEnv(t, keys.AlgEdDSA)
	_, err := e.v.Verify(ctx, e.sign(t, e.header(t, map[string]any{"alg": strings.Repeat("A", 500)}), e.payload(nil)), VerifyOptions{})
	wantReason(t, err, ReasonAlg)
	if len(err.Error()) > 100 {
		t.Fatalf("error text of %d bytes: a hostile alg must be cut short", len(err.Error()))
	}
	if ReasonRevoked.String() != "revoked" || Reason(99).String() != "reason(99)" {
		t.Fatal("Reason.String")
	}
}

// Only headers of verified tokens are remembered, and the memo stays bounded.
func TestHeaderMemo(t *testing.T) {
	e := newEnv(t, keys.AlgEdDSA)
	e.v.SetCacheSize(0)
	bad := e.sign(t, e.header(t, map[string]any{"x": "unsigned"}), e.payload(nil))
	bp := strings.Split(bad, ".")
	if _, err := e.v.Verify(ctx, bp[0]+"."+bp[1]+"."+flip(bp[2]), VerifyOptions{}); err == nil {
		t.Fatal("bad signature accepted")
	}
	if n := e.v.headers.n.Load(); n != 0 {
		t.Fatalf("a header of a refused token was remembered (%d)", n)
	}
	for i := range 3 * maxKnownHeaders {
		raw := e.sign(t, e.header(t, map[string]any{"x": i}), e.payload(nil))
		for range 2 { // the second time through the memo
			if _, err := e.v.Verify(ctx, raw, VerifyOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if n := e.v.headers.n.Load(); n < 1 || n > maxKnownHeaders {
			t.Fatalf("memo holds %d headers", n)
		}
	}
}
