package token

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/jsonx"
	"github.com/posgate/posgate/internal/keys"
)

// Fuzz targets (run one at a time, e.g.
//	go test -run '^$' -fuzz '^FuzzSplitJWT$' -fuzztime 2m -parallel 1 ./internal/token/
// ). Each checks properties, not just "no panic".

// checkVerifyError fails unless err is a *VerifyError with a defined reason and a short detail.
func checkVerifyError(t *testing.T, err error) *VerifyError {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *VerifyError", err, err)
	}
	if ve.Reason < ReasonMalformed || ve.Reason > ReasonRevoked {
		t.Fatalf("undefined reason %d", ve.Reason)
	}
	if ve.Detail == "" || len(ve.Detail) > 300 {
		t.Fatalf("detail of %d bytes: %q", len(ve.Detail), ve.Detail)
	}
	return ve
}

var frontDoorSeeds = []string{
	"",
	".",
	"..",
	"...",
	"e30.e30.",
	"e30.e30.e30",
	"e31.e30.",
	"e30=.e30.",
	"eyJhbGciOiJIUzI1NiJ9.e30.",
	"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
	enc(`{"alg":"EdDSA","kid":"k","typ":"at+jwt"}`) + "." + enc(`{"sub":"s"}`) + "." + enc("sig"),
	enc(`{"alg":"EdDSA","alg":"none"}`) + ".e30.",
	enc(`{"alg":"EdDSA","ALG":"none"}`) + ".e30.",
	enc(`{"\u0061lg":"HS256"}`) + ".e30.",
	enc(`{"alg":"HS256","crit":["b64"]}`) + ".e30.",
	enc(`{"alg":null}`) + ".e30.",
	enc(`{"alg":["HS256"]}`) + ".e30.",
	enc(`{"alg":"HS256","kid":{"a":[1,{"b":2}]}}`) + ".e30.",
	enc(`{"alg":"HS256","x":"\ud800"}`) + ".e30.",
	enc(" {\"alg\" : \"HS256\" } ") + ".e30.",
	enc(`{"alg":"HS256"}{}`) + ".e30.",
	enc(strings.Repeat("[", 40)) + ".e30.",
	"e30.e3\n0.",
	"e30.e30.\r",
	strings.Repeat("A", MaxTokenBytes-4) + ".e30.",
}

// FuzzSplitJWT fuzzes the front door: length cap, segment split, strict base64url, header parse.
func FuzzSplitJWT(f *testing.F) {
	for _, s := range frontDoorSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		h, p, s, si, err := SplitJWT(raw)
		if err != nil {
			ve := checkVerifyError(t, err)
			if len(raw) > MaxTokenBytes && ve.Reason != ReasonTooLarge {
				t.Fatalf("oversized token: reason %v", ve.Reason)
			}
			if h != nil || p != nil || s != nil || si != "" {
				t.Fatal("segments returned with an error")
			}
			return
		}
		// Accepted: at most the cap, exactly three segments, each the unique canonical encoding
		// of what was decoded (no padding, no white space, no spare bits).
		if len(raw) > MaxTokenBytes || strings.Count(raw, ".") != 2 {
			t.Fatalf("accepted %d bytes with %d dots", len(raw), strings.Count(raw, "."))
		}
		re := enc(string(h)) + "." + enc(string(p)) + "." + base64.RawURLEncoding.EncodeToString(s)
		if re != raw || si != raw[:strings.LastIndexByte(raw, '.')] || len(h) == 0 || len(p) == 0 {
			t.Fatalf("not canonical: %q re-encodes as %q", raw, re)
		}
		hdr, ve := parseHeader(h)
		if ve != nil {
			checkVerifyError(t, ve)
			if ve.Reason != ReasonJSON && ve.Reason != ReasonMissingAlg && ve.Reason != ReasonAlg {
				t.Fatalf("header refused with reason %v", ve.Reason)
			}
			if ve.Reason != ReasonJSON && jsonx.CheckObject(h) != nil {
				t.Fatal("a header that is not strict JSON got past the JSON check")
			}
			return
		}
		// Accepted header: strict JSON, and alg/kid/typ exactly what encoding/json reads under
		// those exact names.
		if err := jsonx.CheckObject(h); err != nil {
			t.Fatalf("header accepted but CheckObject says %v", err)
		}
		var m map[string]any
		if err := json.Unmarshal(h, &m); err != nil {
			t.Fatal(err)
		}
		if _, crit := m["crit"]; crit {
			t.Fatal("crit header accepted")
		}
		if alg, _ := m["alg"].(string); alg != hdr.Alg || alg == "" {
			t.Fatalf("alg %q, encoding/json reads %q", hdr.Alg, alg)
		}
		if kid, _ := m["kid"].(string); kid != hdr.Kid {
			t.Fatalf("kid %q, encoding/json reads %q", hdr.Kid, kid)
		}
		if typ, has := m["typ"]; has != hdr.HasTyp || (has && typ != hdr.Typ) {
			t.Fatalf("typ %q/%v, encoding/json reads %v", hdr.Typ, hdr.HasTyp, typ)
		}
	})
}

// FuzzVerifyHS256 fuzzes the shared-key front door with raw tokens, and with tokens it signs
// itself from fuzzed header and payload bytes (so the JSON checks behind a valid signature are
// reached too).
func FuzzVerifyHS256(f *testing.F) {
	for _, s := range frontDoorSeeds {
		f.Add(s, []byte(`{"alg":"HS256"}`), []byte(`{}`))
	}
	f.Add(hs256(hsKey, `{"alg":"HS256","typ":"JWT"}`, `{"sub":"x"}`), []byte(`{"alg":"HS256","typ":"JWT"}`), []byte(`{"sub":"x","iat":1}`))
	f.Add("", []byte(`{"alg":"HS256","alg":"none"}`), []byte(`{}`))
	f.Add("", []byte(`{"alg":"HS256"}`), []byte(`{"a":1,"A":2}`))
	f.Add("", []byte(`{"alg":"none"}`), []byte(`{}`))
	f.Add("", []byte(`{"alg":"HS256"}`), []byte(`[]`))
	f.Add("", []byte(`{"alg":"HS256"}`), []byte(`{"n":{"x":[{"y":null}]}}`))
	f.Fuzz(func(t *testing.T, raw string, header, payload []byte) {
		keys := [][]byte{hsOther, hsKey, hsKey[:31]}
		p, err := VerifyHS256(raw, keys)
		if err != nil {
			checkVerifyError(t, err)
			if p != nil {
				t.Fatal("payload returned with an error")
			}
		} else {
			// Only a correctly signed HS256 token with object payload gets through.
			parts := strings.Split(raw, ".")
			h, _ := base64.RawURLEncoding.DecodeString(parts[0])
			var hm map[string]any
			if json.Unmarshal(h, &hm) != nil || hm["alg"] != "HS256" || jsonx.CheckObject(p) != nil {
				t.Fatalf("accepted %q", raw)
			}
			m := hmac.New(sha256.New, hsKey)
			m.Write([]byte(parts[0] + "." + parts[1]))
			if enc(string(m.Sum(nil))) != parts[2] {
				t.Fatalf("accepted a token not signed with the usable key: %q", raw)
			}
		}

		// Signed by us: accepted exactly when the header is a strict object with alg "HS256" and
		// no crit, and the payload is a strict object.
		signed := hs256(hsKey, string(header), string(payload))
		p, err = VerifyHS256(signed, keys)
		var hm map[string]any
		headerOK := jsonx.CheckObject(header) == nil && json.Unmarshal(header, &hm) == nil && hm["alg"] == "HS256" && hm["crit"] == nil
		if _, hasCrit := hm["crit"]; hasCrit {
			headerOK = false
		}
		want := headerOK && jsonx.CheckObject(payload) == nil && len(signed) <= MaxTokenBytes && len(header) > 0 && len(payload) > 0
		if (err == nil) != want {
			t.Fatalf("header %q payload %q: err = %v, want success %v", header, payload, err, want)
		}
		if err == nil && !bytes.Equal(p, payload) {
			t.Fatalf("payload %q returned as %q", payload, p)
		}
		if err != nil {
			checkVerifyError(t, err)
		}
	})
}

// FuzzVerifier fuzzes posgate's verifier with random tokens and with tokens signed by the active
// key over fuzzed header and payload bytes. Properties: every refusal is a *VerifyError; an
// accepted token has every required claim right; the claims equal an independent decode with
// encoding/json.
func FuzzVerifier(f *testing.F) {
	e := newEnv(f, keys.AlgEdDSA)
	kid := e.activeKID(f)
	good, _, err := e.iss.Issue(ctx, Claims{Subject: "s", Audience: []string{"api"}, SessionID: "fam", Extra: map[string]any{"gty": "x"}}, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	hdr := `{"alg":"EdDSA","kid":"` + kid + `","typ":"at+jwt"}`
	now := t0.Unix()
	pl := func(extra string) []byte {
		return []byte(`{"iss":"` + testIssuer + `","jti":"j","iat":` + itoa(now) + `,"exp":` + itoa(now+60) + extra + `}`)
	}
	f.Add(good, []byte(hdr), pl(""))
	for _, s := range frontDoorSeeds {
		f.Add(s, []byte(hdr), pl(`,"aud":["a","b"]`))
	}
	f.Add("", []byte(`{"alg":"EdDSA","kid":"`+kid+`","typ":"AT+JWT","x":1}`), pl(`,"sub":"\u00e9","sid":"s","n":{"a":[1.5e3]}`))
	f.Add("", []byte(hdr), pl(`,"EXP":1`))
	f.Add("", []byte(hdr), pl(`,"aud":5`))
	f.Add("", []byte(hdr), pl(`,"nbf":1e12`))
	f.Add("", []byte(hdr), []byte(`{"iss":"`+testIssuer+`","jti":"j","iat":"1","exp":2}`))
	f.Add("", []byte(hdr), []byte(`{"iss":"x","iss":"y"}`))
	f.Add("", []byte(`{"alg":"ES256","kid":"`+kid+`","typ":"at+jwt"}`), pl(""))
	f.Fuzz(func(t *testing.T, raw string, header, payload []byte) {
		for _, tok := range []string{raw, e.sign(t, string(header), string(payload))} {
			c, err := e.v.Verify(ctx, tok, VerifyOptions{})
			if err != nil {
				checkVerifyError(t, err)
				continue
			}
			if c.Issuer != testIssuer || c.JTI == "" || c.ExpiresAt.IsZero() || c.IssuedAt.IsZero() ||
				!t0.Before(c.ExpiresAt) || t0.Before(c.IssuedAt) || t0.Before(c.NotBefore) {
				t.Fatalf("accepted claims %+v", c)
			}
			parts := strings.Split(tok, ".")
			p, _ := base64.RawURLEncoding.DecodeString(parts[1])
			ref, ok := refClaims(p)
			if !ok {
				t.Fatalf("accepted a payload the reference decoder refuses: %q", p)
			}
			if !reflect.DeepEqual(ref, c) {
				t.Fatalf("claims differ from the reference decode:\n got %+v\nwant %+v", c, ref)
			}
		}
	})
}

// FuzzDecodeClaims compares the one-pass claims decoder with an independent decode through
// encoding/json on every payload that passes jsonx.CheckObject.
func FuzzDecodeClaims(f *testing.F) {
	for _, s := range []string{`{}`, `{"iss":"a","aud":["x"],"exp":1.5,"extra":{"k":[true,null]}}`, `{"Iss":1}`,
		`{"sub":"\ud83d\ude00","jti":"\u0000"}`, `{"aud":[]}`, `{"aud":null}`, `{"exp":-1}`, `{"exp":1e400}`,
		"{\"x\xff\":1}", `{"s\u0075b":"x"}`, ` { "a" : [ ] , "b" : { } } `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		if jsonx.CheckObject(payload) != nil {
			return
		}
		c, ve := decodeClaims(payload)
		ref, ok := refClaims(payload)
		if (ve == nil) != ok {
			t.Fatalf("%q: decodeClaims err %v, reference ok %v", payload, ve, ok)
		}
		if ok && !reflect.DeepEqual(c, ref) {
			t.Fatalf("%q:\n got %+v\nwant %+v", payload, c, ref)
		}
	})
}

// refClaims decodes claims the slow, obvious way: encoding/json into a map, then type checks.
func refClaims(payload []byte) (*Claims, bool) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if dec.Decode(&m) != nil {
		return nil, false
	}
	c := &Claims{}
	strs := map[string]*string{"iss": &c.Issuer, "sub": &c.Subject, "client_id": &c.ClientID, "scope": &c.Scope, "jti": &c.JTI, "sid": &c.SessionID}
	dates := map[string]*time.Time{"iat": &c.IssuedAt, "nbf": &c.NotBefore, "exp": &c.ExpiresAt}
	for k, v := range m {
		if dst, ok := strs[k]; ok {
			s, ok := v.(string)
			if !ok {
				return nil, false
			}
			*dst = s
			continue
		}
		if dst, ok := dates[k]; ok {
			n, ok := v.(json.Number)
			if !ok {
				return nil, false
			}
			d, err := numericDate([]byte(n))
			if err != nil {
				return nil, false
			}
			*dst = d
			continue
		}
		if k == "aud" {
			switch a := v.(type) {
			case string:
				c.Audience = []string{a}
			case []any:
				c.Audience = []string{}
				for _, x := range a {
					s, ok := x.(string)
					if !ok {
						return nil, false
					}
					c.Audience = append(c.Audience, s)
				}
			default:
				return nil, false
			}
			continue
		}
		if registered[jsonx.FoldKey(k)] {
			return nil, false
		}
		if c.Extra == nil {
			c.Extra = map[string]any{}
		}
		c.Extra[k] = v
	}
	return c, true
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
