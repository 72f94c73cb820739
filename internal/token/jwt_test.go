package token

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

var (
	hsKey   = bytes.Repeat([]byte{0x42}, 32)
	hsOther = bytes.Repeat([]byte{0x43}, 32)
)

func enc(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func hs256(key []byte, header, payload string) string {
	input := enc(header) + "." + enc(payload)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func TestSplitJWT(t *testing.T) {
	h, p, s, si, err := SplitJWT(enc(`{"a":1}`) + "." + enc("pay") + "." + enc("sig"))
	if err != nil || string(h) != `{"a":1}` || string(p) != "pay" || string(s) != "sig" || si != enc(`{"a":1}`)+"."+enc("pay") {
		t.Fatalf("SplitJWT = %q %q %q %q %v", h, p, s, si, err)
	}
	// An empty signature segment is structurally fine (alg decides whether it may be empty).
	if _, _, s, _, err := SplitJWT("e30.e30."); err != nil || len(s) != 0 {
		t.Fatalf("empty signature: %q %v", s, err)
	}
	// The error is a typed nil-free *VerifyError behind the error interface.
	if _, _, _, _, err := SplitJWT("e30.e30.e30"); err != nil {
		t.Fatalf("err = %#v", err)
	}
	for _, c := range []struct {
		raw    string
		reason Reason
	}{
		{"", ReasonMalformed},
		{"e30", ReasonMalformed},
		{"e30.e30", ReasonMalformed},
		{"e30.e30.e30.e30", ReasonMalformed},
		{"....", ReasonMalformed},
		{".e30.", ReasonMalformed},
		{"e30..", ReasonMalformed},
		{strings.Repeat("A", MaxTokenBytes-8) + ".e30.e30e30", ReasonTooLarge},
		{"e30=.e30.", ReasonJSON},        // padding
		{"e30.e30=.", ReasonJSON},        // padding
		{"e30.e30.AA==", ReasonJSON},     // padded signature
		{"e31.e30.", ReasonJSON},         // non-canonical trailing bits ("e31" and "e30" both decode to "{}")
		{"e30.e30.AB", ReasonJSON},       // non-canonical trailing bits in the signature
		{"e30.e3 0.", ReasonJSON},        // space
		{"e30.e3\r0.", ReasonJSON},       // CR (Go's decoder would skip it)
		{"e30.e3\n0.", ReasonJSON},       // LF
		{"e+0.e30.", ReasonJSON},         // standard alphabet
		{"e/0.e30.", ReasonJSON},         // standard alphabet
		{"e30.e30.A", ReasonJSON},        // impossible length
		{"e30.e30.\x00", ReasonJSON},     // NUL
		{"e30.e30.\xff\xfe", ReasonJSON}, // not UTF-8
	} {
		_, _, _, _, err := SplitJWT(c.raw)
		if len(c.raw) > 40 {
			c.raw = c.raw[:40] + "…"
		}
		t.Run(c.raw, func(t *testing.T) { wantReason(t, err, c.reason) })
	}
	// Exactly MaxTokenBytes is allowed.
	raw := enc(`{}`) + "." + strings.Repeat("A", MaxTokenBytes-len(enc(`{}`))-2) + "."
	if len(raw) != MaxTokenBytes {
		t.Fatalf("test token is %d bytes", len(raw))
	}
	if _, _, _, _, err := SplitJWT(raw); err != nil {
		t.Fatalf("token of exactly MaxTokenBytes: %v", err)
	}
}

func TestVerifyHS256(t *testing.T) {
	good := hs256(hsKey, `{"alg":"HS256","typ":"JWT"}`, `{"sub":"loc_1","iat":1}`)
	p, err := VerifyHS256(good, [][]byte{hsKey})
	if err != nil || string(p) != `{"sub":"loc_1","iat":1}` {
		t.Fatalf("VerifyHS256 = %q, %v", p, err)
	}
	// Any of several keys (rotation overlap), in any position; short keys are skipped.
	for _, ks := range [][][]byte{{hsOther, hsKey}, {hsKey, hsOther}, {[]byte("short"), hsKey}} {
		if _, err := VerifyHS256(good, ks); err != nil {
			t.Fatalf("keys %d: %v", len(ks), err)
		}
	}
	parts := strings.Split(good, ".")
	for _, c := range []struct {
		name   string
		raw    string
		keys   [][]byte
		reason Reason
	}{
		{"wrong key", good, [][]byte{hsOther}, ReasonSignature},
		{"no keys", good, nil, ReasonUnknownKey},
		{"only short keys", hs256(hsKey[:31], `{"alg":"HS256"}`, `{}`), [][]byte{hsKey[:31]}, ReasonUnknownKey},
		{"empty key", hs256(nil, `{"alg":"HS256"}`, `{}`), [][]byte{{}}, ReasonUnknownKey},
		{"alg none", enc(`{"alg":"none"}`) + "." + enc(`{}`) + ".", [][]byte{hsKey}, ReasonAlg},
		{"alg HS512", hs256(hsKey, `{"alg":"HS512"}`, `{}`), [][]byte{hsKey}, ReasonAlg},
		{"alg hs256", hs256(hsKey, `{"alg":"hs256"}`, `{}`), [][]byte{hsKey}, ReasonAlg},
		{"alg RS256", hs256(hsKey, `{"alg":"RS256"}`, `{}`), [][]byte{hsKey}, ReasonAlg},
		{"alg an array", hs256(hsKey, `{"alg":["HS256"]}`, `{}`), [][]byte{hsKey}, ReasonAlg},
		{"alg missing", hs256(hsKey, `{"typ":"JWT"}`, `{}`), [][]byte{hsKey}, ReasonMissingAlg},
		{"alg missing, no keys", hs256(hsKey, `{"typ":"JWT"}`, `{}`), nil, ReasonMissingAlg},
		{"alg none, no keys", enc(`{"alg":"none"}`) + "." + enc(`{}`) + ".", nil, ReasonAlg},
		{"duplicate alg", hs256(hsKey, `{"alg":"HS256","alg":"none"}`, `{}`), [][]byte{hsKey}, ReasonJSON},
		{"duplicate alg, other case", hs256(hsKey, `{"alg":"HS256","Alg":"none"}`, `{}`), [][]byte{hsKey}, ReasonJSON},
		{"crit", hs256(hsKey, `{"alg":"HS256","crit":["b64"],"b64":false}`, `{}`), [][]byte{hsKey}, ReasonJSON},
		{"header not an object", hs256(hsKey, `"HS256"`, `{}`), [][]byte{hsKey}, ReasonJSON},
		{"payload duplicate key", hs256(hsKey, `{"alg":"HS256"}`, `{"sub":"a","sub":"b"}`), [][]byte{hsKey}, ReasonJSON},
		{"payload nested duplicate key", hs256(hsKey, `{"alg":"HS256"}`, `{"x":{"a":1,"A":2}}`), [][]byte{hsKey}, ReasonJSON},
		{"payload an array", hs256(hsKey, `{"alg":"HS256"}`, `[1]`), [][]byte{hsKey}, ReasonJSON},
		{"payload trailing data", hs256(hsKey, `{"alg":"HS256"}`, `{}x`), [][]byte{hsKey}, ReasonJSON},
		{"signature truncated", parts[0] + "." + parts[1] + "." + parts[2][:40], [][]byte{hsKey}, ReasonSignature},
		{"signature empty", parts[0] + "." + parts[1] + ".", [][]byte{hsKey}, ReasonSignature},
		{"signature padded", good + "=", [][]byte{hsKey}, ReasonJSON},
		{"too large", strings.Repeat("a", MaxTokenBytes+1), [][]byte{hsKey}, ReasonTooLarge},
		{"two segments", parts[0] + "." + parts[1], [][]byte{hsKey}, ReasonMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := VerifyHS256(c.raw, c.keys)
			if p != nil {
				t.Fatalf("payload returned with an error: %q", p)
			}
			wantReason(t, err, c.reason)
		})
	}
}

// A bad payload behind a bad signature reports the signature: unauthenticated bytes are never
// parsed beyond the header.
func TestVerifyHS256SignatureBeforePayload(t *testing.T) {
	raw := hs256(hsOther, `{"alg":"HS256"}`, `{"a":1,"a":2}`)
	_, err := VerifyHS256(raw, [][]byte{hsKey})
	wantReason(t, err, ReasonSignature)
}

// The header memo only skips the header's parse: a remembered header still needs a valid
// signature and a valid payload, and a header is remembered only once a token carrying it verified.
func TestVerifyHS256HeaderMemo(t *testing.T) {
	header := `{"alg":"HS256","typ":"JWT","memo":"test"}`
	seg := enc(header)
	if _, err := VerifyHS256(hs256(hsOther, header, `{}`), [][]byte{hsKey}); err == nil {
		t.Fatal("wrong key accepted")
	}
	if _, ok := hs256Headers.get(seg); ok {
		t.Fatal("header of a refused token remembered")
	}
	if _, err := VerifyHS256(hs256(hsKey, header, `{"n":1}`), [][]byte{hsKey}); err != nil {
		t.Fatal(err)
	}
	if _, ok := hs256Headers.get(seg); !ok {
		t.Fatal("header of a verified token not remembered")
	}
	_, err := VerifyHS256(hs256(hsOther, header, `{"n":2}`), [][]byte{hsKey})
	wantReason(t, err, ReasonSignature)
	_, err = VerifyHS256(hs256(hsKey, header, `{"n":2,"n":3}`), [][]byte{hsKey})
	wantReason(t, err, ReasonJSON)
	_, err = VerifyHS256(hs256(hsKey, header, `{"n":2}`), nil)
	wantReason(t, err, ReasonUnknownKey)
}
