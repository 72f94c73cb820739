package jackpot_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/posgate/posgate/client/jackpot"
)

func TestAPIKeyNotSentToAnotherHost(t *testing.T) {
	var got http.Header
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	defer other.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/x", http.StatusFound)
	}))
	defer api.Close()
	c := &http.Client{Transport: &jackpot.APIKeyTransport{Key: "pg_ck_secret"}}
	resp, err := c.Get(api.URL + "/v2/stores")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got == nil || got.Get("apikey") != "" {
		t.Fatalf("the redirect target got %v", got)
	}
}
