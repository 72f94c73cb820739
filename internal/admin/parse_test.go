package admin

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/app"
)

// reserved are the audiences a running posgate reserves (its jackpot and chef modules).
var reserved = app.Audiences{"jackpot", "chef"}

func TestParseCreateClient(t *testing.T) {
	cases := []struct {
		body string
		want string // "" = accepted
	}{
		{`{"name":"pos","grant_types":["client_credentials"],"scopes":["read"],"audiences":["api"]}`, ""},
		{`{"name":"jp","grant_types":["client_credentials","urn:ietf:params:oauth:grant-type:jwt-bearer"],"apikey":true,"assertion_secret":true}`, ""},
		{`{"name":" ","grant_types":["client_credentials"]}`, "name: required"},
		{`{"grant_types":["client_credentials"]}`, "name: required"},
		{`{"name":"x"}`, "grant_types: at least one"},
		{`{"name":"x","grant_types":["implicit"]}`, `grant_types[0]: "implicit" is not allowed`},
		{`{"name":"x","grant_types":["password","password"]}`, `grant_types[1]: "password" is repeated`},
		{`{"name":"x","grant_types":["password"],"scopes":["a b"]}`, `scopes[0]: "a b" is not a scope`},
		{`{"name":"x","grant_types":["password"],"scopes":["a","a"]}`, `scopes[1]: "a" is repeated`},
		{`{"name":"x","grant_types":["password"],"audiences":[""]}`, `audiences[0]`},
		{`{"name":"x","grant_types":["client_credentials"],"audiences":["jackpot"]}`, `audiences[0]: "jackpot" is reserved`},
		{`{"name":"x","grant_types":["password"],"audiences":["api","chef"]}`, `audiences[1]: "chef" is reserved`},
		{`{"name":"x","grant_types":["password"],"audiences":["Jackpot","chefs"]}`, ""}, // only the exact names are reserved
		{`{"name":"x","grant_types":["password"],"assertion_secret":true}`, "set apikey: true"},
		{`{"name":"x","name":"y","grant_types":["password"]}`, "duplicate key"},
		{`{"name":"x","Name":"y","grant_types":["password"]}`, "duplicate key"},
		{`{"name":"x","grant_types":["password"],"secret":"s"}`, "unknown field"},
		{`{"name":"x","grant_types":"password"}`, "cannot unmarshal"},
		{`[]`, "not a JSON object"},
		{`{"name":"x","grant_types":["password"]} {}`, "after the object"},
		{`{"name":"a\u0000b","grant_types":["password"]}`, "printable"},
	}
	for _, tc := range cases {
		req, err := ParseCreateClient([]byte(tc.body), reserved)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.body, err)
			} else if req.Scopes == nil || req.Audiences == nil {
				t.Errorf("%s: nil lists", tc.body)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.body, err, tc.want)
		}
	}
}

func TestAPIKeyHint(t *testing.T) {
	if got := APIKeyHint("pg_ck_abcdefghijklmnopqrstuvwxyz0123"); got != "pg_ck_…0123" {
		t.Errorf("hint = %q", got)
	}
	if got := APIKeyHint("pg_ck_ab"); strings.Contains(got, "ab") {
		t.Errorf("short key leaked in hint %q", got)
	}
}

// FuzzAdminBodies feeds arbitrary bytes to the admin API's body parsers. Properties: no panic; an
// accepted create-client body satisfies every documented invariant and survives a JSON round trip
// unchanged; an accepted revoke body has a bounded non-empty token.
func FuzzAdminBodies(f *testing.F) {
	for _, s := range []string{
		`{"name":"pos","grant_types":["client_credentials"],"scopes":["read"],"audiences":["api"]}`,
		`{"name":"jp","grant_types":["client_credentials","urn:ietf:params:oauth:grant-type:jwt-bearer"],"apikey":true,"assertion_secret":true}`,
		`{"name":"x","name":"y","grant_types":["password"]}`,
		`{"name":"x","grant_types":["password"],"scopes":["a","a"]}`,
		`{"name":"x","grant_types":["client_credentials"],"audiences":["jackpot"]}`,
		`{"token":"eyJhbGciOiJFZERTQSJ9.e30.sig"}`,
		`{"token":""}`,
		`{"token":"a","TOKEN":"b"}`,
		`{}`, `[]`, `null`, `{"a":{"b":{"c":[[[[]]]]}}}`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if req, err := ParseCreateClient(data, reserved); err == nil {
			if strings.TrimSpace(req.Name) != req.Name || req.Name == "" {
				t.Fatalf("name %q", req.Name)
			}
			if len(req.GrantTypes) == 0 {
				t.Fatal("no grant types accepted")
			}
			for i, g := range req.GrantTypes {
				if !slices.Contains(KnownGrantTypes, g) || slices.Contains(req.GrantTypes[:i], g) {
					t.Fatalf("grant %q accepted", g)
				}
			}
			for _, s := range append(slices.Clone(req.Scopes), req.Audiences...) {
				if !isScopeToken(s) {
					t.Fatalf("scope/audience %q accepted", s)
				}
			}
			if reserved.HasAny(req.Audiences) {
				t.Fatalf("reserved audience accepted: %v", req.Audiences)
			}
			if req.AssertionSecret && !req.APIKey {
				t.Fatal("assertion secret without API key accepted")
			}
			again, err := json.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseCreateClient(again, reserved)
			if err != nil || !reflect.DeepEqual(req, back) {
				t.Fatalf("round trip: %v\n%+v\n%+v", err, req, back)
			}
		} else if err.Error() == "" {
			t.Fatal("empty error")
		}
		if req, err := ParseRevoke(data); err == nil {
			if req.Token == "" || len(req.Token) > 8<<10 {
				t.Fatalf("token of %d bytes accepted", len(req.Token))
			}
		}
	})
}
