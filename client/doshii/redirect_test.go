package doshii_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/posgate/posgate/client/doshii"
)

func TestJWTNotSentToAnotherHost(t *testing.T) {
	var got http.Header
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	defer other.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/x", http.StatusFound)
	}))
	defer api.Close()
	c := &http.Client{Transport: &doshii.Transport{Key: doshii.NewVendorKey("pg_vk_secret"), Vendor: "v", LocationToken: "pg_lt_x"}}
	resp, err := c.Get(api.URL + "/pos/v3/locations/dl_1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got == nil || got.Get("Authorization") != "" || got.Get("Vendor") != "" {
		t.Fatalf("the redirect target got %v", got)
	}
}
