package oauth

import (
	"net/url"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/errs"
)

func TestParseRequestAccepts(t *testing.T) {
	cases := []struct {
		name, kind, body string
		want             Request
	}{
		{"json password", BodyJSON,
			`{"grant_type":"password","client_id":"c","audience":"https://api","username":"ann","password":"pw d\u00e9","scope":"a offline_access"}`,
			Request{GrantType: "password", ClientID: "c", Audience: "https://api", Username: "ann", Password: "pw dé", Scope: "a offline_access"}},
		{"json null is omitted", BodyJSON, `{"grant_type":"client_credentials","scope":null}`,
			Request{GrantType: "client_credentials"}},
		{"json unknown non-string ignored", BodyJSON, `{"grant_type":"x","extra":{"a":[1,2]},"n":3}`,
			Request{GrantType: "x"}},
		{"json unknown string kept", BodyJSON, `{"grant_type":"x","assertion":"abc"}`,
			Request{GrantType: "x", Params: map[string]string{"assertion": "abc"}}},
		{"json empty value omitted", BodyJSON, `{"grant_type":"x","client_secret":""}`,
			Request{GrantType: "x"}},
		{"form", BodyForm, "grant_type=refresh_token&refresh_token=pg_rt_abc&client_id=c%2Bd",
			Request{GrantType: "refresh_token", RefreshToken: "pg_rt_abc", ClientID: "c+d"}},
		{"form plus is space", BodyForm, "grant_type=password&scope=a+b&password=p%26w",
			Request{GrantType: "password", Scope: "a b", Password: "p&w"}},
		{"form empty value omitted", BodyForm, "grant_type=x&scope=",
			Request{GrantType: "x"}},
		{"form token", BodyForm, "token=abc&token_type_hint=refresh_token",
			Request{Token: "abc", TokenTypeHint: "refresh_token"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseRequest(c.kind, []byte(c.body))
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if got.GrantType != c.want.GrantType || got.ClientID != c.want.ClientID || got.ClientSecret != c.want.ClientSecret ||
				got.Audience != c.want.Audience || got.Scope != c.want.Scope || got.Username != c.want.Username ||
				got.Password != c.want.Password || got.RefreshToken != c.want.RefreshToken || got.Token != c.want.Token ||
				got.TokenTypeHint != c.want.TokenTypeHint || len(got.Params) != len(c.want.Params) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
			for k, v := range c.want.Params {
				if got.Params[k] != v {
					t.Fatalf("Params[%q] = %q, want %q", k, got.Params[k], v)
				}
			}
		})
	}
}

func TestParseRequestRefuses(t *testing.T) {
	long := strings.Repeat("a", MaxParamBytes+1)
	var many strings.Builder
	for i := 0; i <= MaxParams; i++ {
		many.WriteString("p" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "=1&")
	}
	cases := []struct{ name, kind, body string }{
		{"json duplicate key", BodyJSON, `{"grant_type":"password","grant_type":"client_credentials"}`},
		{"json duplicate key case-folded", BodyJSON, `{"client_id":"a","Client_ID":"b"}`},
		{"json not object", BodyJSON, `["grant_type"]`},
		{"json trailing data", BodyJSON, `{"grant_type":"x"} {}`},
		{"json truncated", BodyJSON, `{"grant_type":"x"`},
		{"json empty", BodyJSON, ``},
		{"json known field number", BodyJSON, `{"grant_type":"password","password":12345678}`},
		{"json known field array", BodyJSON, `{"grant_type":"client_credentials","scope":["a","b"]}`},
		{"json known field bool", BodyJSON, `{"client_id":true}`},
		{"json control char", BodyJSON, `{"password":"a\u0000b"}`},
		{"json newline", BodyJSON, `{"username":"a\nb"}`},
		{"json too long value", BodyJSON, `{"password":"` + long + `"}`},
		{"json bad name", BodyJSON, `{"a b":"x"}`},
		{"form repeated", BodyForm, "grant_type=password&grant_type=client_credentials"},
		{"form semicolon", BodyForm, "grant_type=password;client_id=x"},
		{"form bad escape", BodyForm, "grant_type=%zz"},
		{"form control char", BodyForm, "password=a%00b"},
		{"form invalid utf8", BodyForm, "password=%ff%fe"},
		{"form too many", BodyForm, many.String()},
		{"form too long", BodyForm, "password=" + long},
		{"body too large", BodyForm, "a=" + strings.Repeat("b", MaxBodyBytes)},
		{"unknown kind", "xml", "<x/>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRequest(c.kind, []byte(c.body))
			if err == nil {
				t.Fatal("accepted")
			}
			if e, ok := errs.As(err); !ok || e.Code != CodeInvalidRequest || e.Kind != errs.BadInput {
				t.Fatalf("error %v, want invalid_request", err)
			}
			// The description never echoes a value.
			if strings.Contains(err.Error(), "12345678") || strings.Contains(err.Error(), "client_credentials\"") {
				t.Fatalf("error echoes a value: %v", err)
			}
		})
	}
}

func TestParseScope(t *testing.T) {
	got, err := parseScope("  a b  a offline_access ")
	if err != nil || joinScope(got) != "a b offline_access" {
		t.Fatalf("parseScope = %q, %v", got, err)
	}
	for _, bad := range []string{"a\tb", `a"b`, `a\b`, "é"} {
		if _, err := parseScope(bad); err == nil {
			t.Errorf("parseScope(%q) accepted", bad)
		}
	}
	if s, err := grantScope(nil, []string{"a", "offline_access", "b"}, true); err != nil || joinScope(s) != "a b" {
		t.Errorf("default scope = %q, %v", s, err)
	}
	if s, err := grantScope([]string{"b", "offline_access"}, []string{"a", "b"}, false); err != nil || joinScope(s) != "b" {
		t.Errorf("offline dropped = %q, %v", s, err)
	}
	if s, err := grantScope([]string{"b", "offline_access"}, []string{"a", "b"}, true); err != nil || joinScope(s) != "b offline_access" {
		t.Errorf("offline kept = %q, %v", s, err)
	}
	if _, err := grantScope([]string{"c"}, []string{"a", "b"}, true); errs.CodeOf(err) != CodeAccessDenied {
		t.Errorf("scope not allowed: %v", err)
	}
}

// FuzzParseRequest feeds the token request parser arbitrary JSON and form bodies. It must never
// panic, must answer only invalid_request errors, and whatever it accepts must hold only values
// that pass the same checks again (no control characters, bounded lengths), and a form body it
// accepts must parse the same after re-encoding.
func FuzzParseRequest(f *testing.F) {
	seeds := []string{
		`{"grant_type":"password","client_id":"pg_ck_x","audience":"https://api.chimpy","username":"ann","password":"secret","scope":"offline_access rentals"}`,
		`{"grant_type":"refresh_token","client_id":"c","refresh_token":"pg_rt_AAAA"}`,
		`{"grant_type":"client_credentials","client_id":"c","client_secret":"s","audience":null}`,
		`{"a":{"b":[1,{"c":"d"}]},"grant_type":"x"}`,
		`{"grant_type":"x","grant_type":"y"}`,
		`{"grant_type":"\u0000"}`,
		"grant_type=password&username=ann&password=p%40ss&scope=a+b",
		"grant_type=refresh_token&refresh_token=pg_rt_abc&client_id=c&client_id=d",
		"token=abc&token_type_hint=access_token",
		"a=%zz;b=1",
		"",
	}
	for i, s := range seeds {
		f.Add(i%2 == 0, []byte(s))
		f.Add(i%2 == 1, []byte(s))
	}
	f.Fuzz(func(t *testing.T, isJSON bool, body []byte) {
		kind := BodyForm
		if isJSON {
			kind = BodyJSON
		}
		req, err := ParseRequest(kind, body)
		if err != nil {
			if e, ok := errs.As(err); !ok || e.Code != CodeInvalidRequest {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		all := map[string]string{
			"grant_type": req.GrantType, "client_id": req.ClientID, "client_secret": req.ClientSecret,
			"audience": req.Audience, "scope": req.Scope, "username": req.Username, "password": req.Password,
			"refresh_token": req.RefreshToken, "token": req.Token, "token_type_hint": req.TokenTypeHint,
		}
		for k, v := range req.Params {
			if _, dup := all[k]; dup {
				t.Fatalf("known parameter %q also in Params", k)
			}
			all[k] = v
		}
		form := url.Values{}
		for k, v := range all {
			if len(v) > MaxParamBytes || !validValue(v) {
				t.Fatalf("accepted an invalid value for %q", k)
			}
			if v != "" {
				form.Set(k, v)
			}
		}
		again, err := ParseRequest(BodyForm, []byte(form.Encode()))
		if err != nil && len(form.Encode()) <= MaxBodyBytes {
			t.Fatalf("re-encoded form refused: %v", err)
		}
		if err == nil && (again.GrantType != req.GrantType || again.Password != req.Password || again.Scope != req.Scope ||
			again.RefreshToken != req.RefreshToken || again.ClientID != req.ClientID || len(again.Params) != len(req.Params)) {
			t.Fatalf("round trip changed the request: %+v vs %+v", again, req)
		}
	})
}
