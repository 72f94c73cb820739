package tokensource_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/posgate/posgate/client/tokensource"
)

// A redirect to another host must not carry the token; one to the same host does.
func TestTransportRedirects(t *testing.T) {
	var got http.Header
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	defer other.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/x", http.StatusFound)
		case "/here":
			http.Redirect(w, r, "/end", http.StatusFound)
		default:
			got = r.Header.Clone()
		}
	}))
	defer api.Close()
	src := tokensource.New(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
		return &oauth2.Token{AccessToken: "secret", Expiry: time.Now().Add(time.Hour)}, nil
	}, nil, tokensource.Options{})
	c := tokensource.Client(src, nil)
	for path, want := range map[string]string{"/away": "", "/here": "Bearer secret"} {
		got = nil
		resp, err := c.Get(api.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got.Get("Authorization") != want {
			t.Fatalf("%s: Authorization %q, want %q", path, got.Get("Authorization"), want)
		}
	}
}
