package jackpot

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/token"
)

var (
	testNow    = time.Unix(1_800_000_000, 0)
	testWindow = AssertionWindow{Past: 300 * time.Second, Future: 60 * time.Second}
	testKey    = []byte("pg_as_" + strings.Repeat("k", 43))
)

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// signRaw builds a compact JWS from literal header and payload JSON, HMAC-SHA256 over them with
// key: it lets tests send headers a JWT library would refuse to produce.
func signRaw(key []byte, header, payload string) string {
	in := b64(header) + "." + b64(payload)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func claimsJSON(t testing.TB, c map[string]any) string {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func goodClaims() map[string]any {
	return map[string]any{"amount": 25.5, "iat": testNow.Unix(), "notificationKey": "order-1"}
}

const hs256Header = `{"alg":"HS256","typ":"JWT"}`

func TestAssertionClaims(t *testing.T) {
	iat := testNow.Unix()
	cases := []struct {
		name    string
		payload string
		wantErr string // substring of the description; "" = accepted
		check   func(t *testing.T, a *Assertion)
	}{
		{"minimal", fmt.Sprintf(`{"amount":25.5,"iat":%d,"notificationKey":"n1"}`, iat), "", func(t *testing.T, a *Assertion) {
			if a.Amount != 25.5 || a.NotificationKey != "n1" || !a.IssuedAt.Equal(testNow) || a.UserID != nil || a.ForceManualConfirm != nil || a.JTI != "" {
				t.Errorf("got %+v", a)
			}
		}},
		{"all optional claims", fmt.Sprintf(`{"amount":3,"iat":%d,"notificationKey":"n1","userId":"u-7","forceManualConfirm":true,"jti":"j1","foo":{"bar":[1,2]}}`, iat), "", func(t *testing.T, a *Assertion) {
			if a.UserID != "u-7" || a.ForceManualConfirm == nil || !*a.ForceManualConfirm || a.JTI != "j1" || a.Amount != 3 {
				t.Errorf("got %+v", a)
			}
		}},
		{"numeric userId", fmt.Sprintf(`{"amount":3,"iat":%d,"notificationKey":"n1","userId":42}`, iat), "", func(t *testing.T, a *Assertion) {
			if a.UserID != json.Number("42") {
				t.Errorf("userId %#v", a.UserID)
			}
		}},
		{"null optional claims are absent", fmt.Sprintf(`{"amount":3,"iat":%d,"notificationKey":"n1","userId":null,"forceManualConfirm":null,"jti":null}`, iat), "", nil},
		{"amount missing", fmt.Sprintf(`{"iat":%d,"notificationKey":"n1"}`, iat), "amount is missing", nil},
		{"amount null", fmt.Sprintf(`{"amount":null,"iat":%d,"notificationKey":"n1"}`, iat), "amount is missing", nil},
		{"amount zero", fmt.Sprintf(`{"amount":0,"iat":%d,"notificationKey":"n1"}`, iat), "amount must be a positive number", nil},
		{"amount negative", fmt.Sprintf(`{"amount":-1,"iat":%d,"notificationKey":"n1"}`, iat), "amount must be a positive number", nil},
		{"amount string", fmt.Sprintf(`{"amount":"10","iat":%d,"notificationKey":"n1"}`, iat), "amount must be a positive number", nil},
		{"amount bool", fmt.Sprintf(`{"amount":true,"iat":%d,"notificationKey":"n1"}`, iat), "amount must be a positive number", nil},
		{"amount overflow", fmt.Sprintf(`{"amount":1e400,"iat":%d,"notificationKey":"n1"}`, iat), "amount must be a positive number", nil},
		{"amount tiny positive", fmt.Sprintf(`{"amount":0.01,"iat":%d,"notificationKey":"n1"}`, iat), "", nil},
		{"iat missing", `{"amount":1,"notificationKey":"n1"}`, "iat is missing", nil},
		{"iat string", `{"amount":1,"iat":"1800000000","notificationKey":"n1"}`, "iat must be an integer", nil},
		{"iat fractional", `{"amount":1,"iat":1800000000.5,"notificationKey":"n1"}`, "iat must be an integer", nil},
		{"iat exponent", `{"amount":1,"iat":1.8e9,"notificationKey":"n1"}`, "iat must be an integer", nil},
		{"iat just inside past", fmt.Sprintf(`{"amount":1,"iat":%d,"notificationKey":"n1"}`, iat-300), "", nil},
		{"iat just outside past", fmt.Sprintf(`{"amount":1,"iat":%d,"notificationKey":"n1"}`, iat-301), "iat is more than 300 s in the past", nil},
		{"iat just inside future", fmt.Sprintf(`{"amount":1,"iat":%d,"notificationKey":"n1"}`, iat+60), "", nil},
		{"iat just outside future", fmt.Sprintf(`{"amount":1,"iat":%d,"notificationKey":"n1"}`, iat+61), "iat is more than 60 s in the future", nil},
		{"iat huge", `{"amount":1,"iat":9223372036854775807,"notificationKey":"n1"}`, "in the future", nil},
		{"iat very negative", `{"amount":1,"iat":-9223372036854775808,"notificationKey":"n1"}`, "in the past", nil},
		{"iat beyond int64", `{"amount":1,"iat":9223372036854775808,"notificationKey":"n1"}`, "iat must be an integer", nil},
		{"exp passed", fmt.Sprintf(`{"amount":1,"iat":%d,"exp":%d,"notificationKey":"n1"}`, iat-10, iat), "expired", nil},
		{"exp future", fmt.Sprintf(`{"amount":1,"iat":%d,"exp":%d.5,"notificationKey":"n1"}`, iat, iat), "", nil},
		{"exp not a number", fmt.Sprintf(`{"amount":1,"iat":%d,"exp":"x","notificationKey":"n1"}`, iat), "exp must be a number", nil},
		{"nbf future", fmt.Sprintf(`{"amount":1,"iat":%d,"nbf":%d,"notificationKey":"n1"}`, iat, iat+5), "not valid yet", nil},
		{"notificationKey missing", fmt.Sprintf(`{"amount":1,"iat":%d}`, iat), "notificationKey is missing", nil},
		{"notificationKey number", fmt.Sprintf(`{"amount":1,"iat":%d,"notificationKey":5}`, iat), "notificationKey must be a string", nil},
		{"notificationKey empty", fmt.Sprintf(`{"amount":1,"iat":%d,"notificationKey":""}`, iat), "must not be empty", nil},
		{"notificationKey 128 chars", fmt.Sprintf(`{"amount":1,"iat":%d,"notificationKey":"%s"}`, iat, strings.Repeat("é", 128)), "", nil},
		{"notificationKey 129 chars", fmt.Sprintf(`{"amount":1,"iat":%d,"notificationKey":"%s"}`, iat, strings.Repeat("a", 129)), "at most 128 characters", nil},
		{"userId object", fmt.Sprintf(`{"amount":1,"iat":%d,"notificationKey":"n","userId":{}}`, iat), "userId must be a string or a number", nil},
		{"userId empty", fmt.Sprintf(`{"amount":1,"iat":%d,"notificationKey":"n","userId":""}`, iat), "userId must be a non-empty string", nil},
		{"forceManualConfirm string", fmt.Sprintf(`{"amount":1,"iat":%d,"notificationKey":"n","forceManualConfirm":"true"}`, iat), "forceManualConfirm must be a boolean", nil},
		{"jti number", fmt.Sprintf(`{"amount":1,"iat":%d,"notificationKey":"n","jti":7}`, iat), "jti must be a non-empty string", nil},
		// Order of the checks: amount before iat before notificationKey.
		{"amount reported first", `{"amount":0,"iat":1,"notificationKey":""}`, "amount", nil},
		{"iat before notificationKey", `{"amount":1,"iat":1,"notificationKey":""}`, "iat", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := parseAssertionClaims([]byte(tc.payload), testNow, testWindow)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if tc.check != nil {
					tc.check(t, a)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %+v; want error containing %q", a, tc.wantErr)
			}
			ae, ok := err.(*assertionError)
			if !ok {
				t.Fatalf("error %T %v", err, err)
			}
			if !strings.Contains(ae.Description, tc.wantErr) {
				t.Fatalf("description %q; want it to contain %q", ae.Description, tc.wantErr)
			}
			if ae.Credential {
				t.Fatalf("a claim problem must not count as a credential failure")
			}
		})
	}
}

// The front door: size, strict parse, alg pinned, then the key — through VerifyAssertion, so the
// descriptions are the ones /v2/token sends.
func TestVerifyAssertionFrontDoor(t *testing.T) {
	apiKey := []byte("pg_ck_" + strings.Repeat("a", 43)) // the API key is public-ish: never a signing key
	payload := claimsJSON(t, goodClaims())
	good := signRaw(testKey, hs256Header, payload)
	parts := strings.Split(good, ".")

	hs512 := func() string {
		in := b64(`{"alg":"HS512","typ":"JWT"}`) + "." + b64(payload)
		mac := hmac.New(sha512.New, testKey)
		mac.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}()
	cases := []struct {
		name       string
		raw        string
		keys       [][]byte
		wantErr    string
		credential bool
	}{
		{"valid", good, [][]byte{testKey}, "", false},
		{"valid with the older of two keys", good, [][]byte{[]byte("pg_as_" + strings.Repeat("n", 43)), testKey}, "", false},
		{"signed with the API key", signRaw(apiKey, hs256Header, payload), [][]byte{testKey}, "signature does not verify", true},
		{"no key", good, nil, "", true},
		{"alg none", b64(`{"alg":"none","typ":"JWT"}`) + "." + b64(payload) + ".", [][]byte{testKey}, "HS256", true},
		{"alg none with signature", signRaw(testKey, `{"alg":"none"}`, payload), [][]byte{testKey}, "HS256", true},
		{"alg HS512", hs512, [][]byte{testKey}, "HS256", true},
		{"alg RS256", signRaw(testKey, `{"alg":"RS256","typ":"JWT"}`, payload), [][]byte{testKey}, "HS256", true},
		{"alg lowercase", signRaw(testKey, `{"alg":"hs256"}`, payload), [][]byte{testKey}, "HS256", true},
		{"alg missing", signRaw(testKey, `{"typ":"JWT"}`, payload), [][]byte{testKey}, "alg", true},
		{"duplicate alg", signRaw(testKey, `{"alg":"HS256","alg":"none"}`, payload), [][]byte{testKey}, "malformed", true},
		{"duplicate claim", signRaw(testKey, hs256Header, `{"amount":1,"amount":1000,"iat":1800000000,"notificationKey":"n"}`), [][]byte{testKey}, "malformed", true},
		{"padded base64", parts[0] + "=." + parts[1] + "." + parts[2], [][]byte{testKey}, "", true},
		{"std base64 alphabet", strings.ReplaceAll(strings.ReplaceAll(good, "-", "+"), "_", "/") + "+", [][]byte{testKey}, "", true},
		{"two segments", parts[0] + "." + parts[1], [][]byte{testKey}, "", true},
		{"four segments", good + ".x", [][]byte{testKey}, "", true},
		{"empty", "", [][]byte{testKey}, "", true},
		{"too large", signRaw(testKey, hs256Header, `{"pad":"`+strings.Repeat("x", token.MaxTokenBytes)+`"}`), [][]byte{testKey}, "larger than", true},
		{"claims not an object", signRaw(testKey, hs256Header, `[1]`), [][]byte{testKey}, "", true},
		{"bad claims after good signature", signRaw(testKey, hs256Header, `{"amount":0,"iat":1800000000,"notificationKey":"n"}`), [][]byte{testKey}, "amount", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := VerifyAssertion(tc.raw, tc.keys, testNow, testWindow)
			if tc.name == "valid" || strings.HasPrefix(tc.name, "valid with") {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if a.Amount != 25.5 || a.NotificationKey != "order-1" {
					t.Fatalf("got %+v", a)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted")
			}
			ae, ok := err.(*assertionError)
			if !ok {
				t.Fatalf("error %T %v", err, err)
			}
			if tc.wantErr != "" && !strings.Contains(ae.Description, tc.wantErr) {
				t.Fatalf("description %q; want it to contain %q", ae.Description, tc.wantErr)
			}
			if ae.Credential != tc.credential {
				t.Fatalf("credential=%v; want %v (%q)", ae.Credential, tc.credential, ae.Description)
			}
			if strings.Contains(ae.Description, string(testKey)) || strings.Contains(ae.Description, tc.raw) && tc.raw != "" {
				t.Fatalf("description leaks input: %q", ae.Description)
			}
		})
	}
}

// An alg other than HS256 is refused before any key is looked at: with no key at all, and with a
// key, the answer names the alg, not the signature.
func TestAlgCheckedBeforeKeys(t *testing.T) {
	payload := claimsJSON(t, goodClaims())
	for _, alg := range []string{"none", "HS512", "RS256", "ES256", "EdDSA", "HS384", "PS256", ""} {
		for _, keys := range [][][]byte{nil, {testKey}} {
			raw := signRaw(testKey, fmt.Sprintf(`{"alg":%q}`, alg), payload)
			_, err := VerifyAssertion(raw, keys, testNow, testWindow)
			ae, ok := err.(*assertionError)
			if !ok {
				t.Fatalf("alg %q: error %T %v", alg, err, err)
			}
			if !strings.Contains(ae.Description, "HS256") {
				t.Fatalf("alg %q, %d keys: description %q does not name the alg problem", alg, len(keys), ae.Description)
			}
		}
	}
}

// FuzzVerifyAssertion feeds the verifier two kinds of input: raw, as an attacker would send it
// (mostly stopped at the front door), and a header and payload that the fuzzer chooses but that
// are correctly signed with the client's key, so the claim rules behind the signature are fuzzed
// too. Whatever is accepted must really be HS256 with our key and obey every claim rule.
func FuzzVerifyAssertion(f *testing.F) {
	payload := fmt.Sprintf(`{"amount":25.5,"iat":%d,"notificationKey":"order-1","userId":"u","forceManualConfirm":false,"jti":"j"}`, testNow.Unix())
	add := func(raw, header, payload string) { f.Add(raw, header, payload) }
	add(signRaw(testKey, hs256Header, payload), hs256Header, payload)
	add(signRaw(testKey, `{"alg":"none"}`, payload), `{"alg":"none"}`, payload)
	add(signRaw(testKey, `{"alg":"HS256","alg":"HS256"}`, payload), `{"alg":"HS256","ALG":"none"}`, `{"amount":1,"Amount":2}`)
	add(signRaw(testKey, hs256Header, `{"amount":1e309,"iat":1.5,"notificationKey":""}`), hs256Header, `{"amount":1e309,"iat":1.5,"notificationKey":""}`)
	add("a.b.c", `{"alg":"HS256","crit":["b64"]}`, `{"amount":1,"iat":-1,"notificationKey":"x","exp":1e300,"nbf":-1e300}`)
	add("..", hs256Header, fmt.Sprintf(`{"amount":0.0000001,"iat":%d,"notificationKey":"\u0000","userId":1e2,"jti":null}`, testNow.Unix()+60))
	add("", `{"alg":"HS256","typ":null}`, `[]`)
	add(b64(`{"alg":"HS256"}`)+"."+b64(`{}`)+".", `{"alg":"HS256","kid":1}`, `{"amount":"1"}`)
	f.Fuzz(func(t *testing.T, raw, header, payload string) {
		checkFuzzedAssertion(t, raw)
		checkFuzzedAssertion(t, signRaw(testKey, header, payload))
	})
}

func checkFuzzedAssertion(t *testing.T, raw string) {
	a, err := VerifyAssertion(raw, [][]byte{testKey}, testNow, testWindow)
	if err != nil {
		ae, ok := err.(*assertionError)
		if !ok {
			t.Fatalf("error of type %T: %v", err, err)
		}
		if ae.Description == "" || strings.Contains(ae.Description, string(testKey)) {
			t.Fatalf("bad description %q", ae.Description)
		}
		return
	}
	// Accepted: then it really is HS256 with our key and its claims obey the rules.
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || len(raw) > token.MaxTokenBytes {
		t.Fatalf("accepted a token of %d segments / %d bytes", len(parts), len(raw))
	}
	mac := hmac.New(sha256.New, testKey)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if base64.RawURLEncoding.EncodeToString(mac.Sum(nil)) != parts[2] {
		t.Fatalf("accepted a token whose signature is not our HMAC")
	}
	hdr, err := base64.RawURLEncoding.Strict().DecodeString(parts[0])
	if err != nil {
		t.Fatalf("accepted an undecodable header")
	}
	var h map[string]any
	if json.Unmarshal(hdr, &h) != nil || h["alg"] != "HS256" {
		t.Fatalf("accepted header %s", hdr)
	}
	if !(a.Amount > 0) || a.NotificationKey == "" || len([]rune(a.NotificationKey)) > maxNotificationKey {
		t.Fatalf("accepted claims %+v", a)
	}
	if a.IssuedAt.Before(testNow.Add(-testWindow.Past)) || a.IssuedAt.After(testNow.Add(testWindow.Future)) {
		t.Fatalf("accepted iat %v", a.IssuedAt)
	}
	// The result agrees with an independent reading of the claims.
	var c map[string]any
	if err := json.Unmarshal(mustDecode(t, parts[1]), &c); err != nil {
		t.Fatalf("accepted claims that do not decode: %v", err)
	}
	if c["notificationKey"] != a.NotificationKey {
		t.Fatalf("notificationKey %q vs %v", a.NotificationKey, c["notificationKey"])
	}
	if f, ok := c["amount"].(float64); !ok || f != a.Amount {
		t.Fatalf("amount %v vs %v", a.Amount, c["amount"])
	}
	if v, present := c["forceManualConfirm"]; present && v != nil {
		if b, ok := v.(bool); !ok || a.ForceManualConfirm == nil || *a.ForceManualConfirm != b {
			t.Fatalf("forceManualConfirm %v vs %v", a.ForceManualConfirm, v)
		}
	} else if a.ForceManualConfirm != nil {
		t.Fatalf("forceManualConfirm invented")
	}
}

func mustDecode(t *testing.T, s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
