package server_test

import (
	"testing"

	"github.com/posgate/posgate/internal/server/servertest"
)

// The admin introspection answer uses RFC 7662's member names, so it gives them RFC 7662's types:
// iat and exp are NumericDates (seconds since the epoch), the same numbers the OAuth
// introspection endpoint gives for the same token.
func TestAdminIntrospectionTimesAreNumericDates(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	tok, id, sec := mintOn(t, inst)
	want := introspect(t, inst, tok, id, sec)
	status, got := inst.Admin(t, "POST", "/tokens/introspect", map[string]any{"token": tok})
	if status != 200 || got["active"] != true || want["active"] != true {
		t.Fatalf("admin introspect: %d %v; OAuth introspection %v", status, got, want)
	}
	for _, k := range []string{"iat", "exp"} {
		if _, ok := got[k].(float64); !ok || got[k] != want[k] {
			t.Errorf("%s: admin %#v, OAuth introspection %#v", k, got[k], want[k])
		}
	}
}
