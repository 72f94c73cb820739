package server_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/server/servertest"
)

// The admin introspection answer uses RFC 7662's member names, so it gives them RFC 7662's types:
// iat and exp are NumericDates (seconds since the epoch), the same numbers the OAuth
// introspection endpoint gives for the same token.
func TestAdminIntrospectionTimesAreNumericDates(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	_, cl := inst.Admin(t, "POST", "/clients", map[string]any{"name": "rs", "grant_types": []string{"client_credentials"}, "scopes": []string{"a"}})
	id, sec := cl["client_id"].(string), cl["client_secret"].(string)
	post := func(path string, v url.Values) map[string]any {
		t.Helper()
		req, _ := http.NewRequest("POST", inst.URL+path, strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, sec)
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v %v", path, resp.StatusCode, m, err)
		}
		return m
	}
	tok := post("/oauth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"a"}})["access_token"].(string)
	want := post("/oauth/introspect", url.Values{"token": {tok}})
	status, got := inst.Admin(t, "POST", "/tokens/introspect", map[string]any{"token": tok})
	if status != 200 || got["active"] != true {
		t.Fatalf("admin introspect: %d %v", status, got)
	}
	for _, k := range []string{"iat", "exp"} {
		if _, ok := got[k].(float64); !ok || got[k] != want[k] {
			t.Errorf("%s: admin %#v, OAuth introspection %#v", k, got[k], want[k])
		}
	}
}
