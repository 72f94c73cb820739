package oauth_test

import (
	"net/http"
	"testing"
)

// TestStoreUnavailable: when the store cannot be reached, the token endpoint answers 503
// temporarily_unavailable with Retry-After (never a 500, never a misleading invalid_client).
func TestStoreUnavailable(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.createClient(t, []string{"client_credentials"}, nil, []string{apiAudience})
	e.advance(5e9) // past the client cache
	if err := e.inst.Svc.Store.Close(); err != nil {
		t.Fatal(err)
	}
	a := e.token(t, map[string]string{"grant_type": "client_credentials", "audience": apiAudience}, &c)
	checkError(t, a, http.StatusServiceUnavailable, "temporarily_unavailable", false)
}
