package chimpy_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/oauth2"

	"github.com/posgate/posgate/client/chimpy"
	"github.com/posgate/posgate/client/tokensource"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
)

// TestMain starts the posgate the examples talk to, with a rentals API behind its gateway, and
// hands them its URL and the app's secrets through the environment, as a deployment would.
func TestMain(m *testing.M) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"rentals":[]}`))
	}))
	inst, tb, stop := servertest.StartMain(servertest.Options{Configure: func(c *config.Config) {
		c.Upstreams = map[string]string{"pos": api.URL}
		c.Routes = []config.Route{{Path: "/api/v1/", Methods: []string{"GET"}, Auth: []string{"chimpy"},
			Scopes: []string{"rentals"}, Audience: audience, Upstream: "pos"}}
	}})
	_, c := inst.Admin(tb, "POST", "/clients", map[string]any{"name": "rentals app", "grant_types": []string{"password", "refresh_token"},
		"scopes": []string{"rentals", "offline_access"}, "audiences": []string{audience}})
	inst.Admin(tb, "POST", "/users", map[string]any{"username": "ann@example.com", "password": "correct horse battery staple"})
	dir, _ := os.MkdirTemp("", "chimpy-example-")
	for k, v := range map[string]string{"POSGATE_URL": inst.URL, "CHIMPY_CLIENT_ID": c["client_id"].(string),
		"CHIMPY_CLIENT_SECRET": c["client_secret"].(string), "CHIMPY_PASSWORD": "correct horse battery staple", "STATE_DIR": dir} {
		os.Setenv(k, v)
	}
	code := m.Run()
	stop()
	api.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// A rentals app signs its user in once and keeps calling the API: the token is cached, renewed
// shortly before it expires, and every rotated refresh token is saved before it is used, so the
// app restarts from the file without asking for the password again.
func Example() {
	store := tokensource.FileStore{Path: filepath.Join(os.Getenv("STATE_DIR"), "chimpy-token.json")}
	saved, err := store.Load() // nil on the first run
	if err != nil {
		log.Fatal(err)
	}
	cfg := chimpy.Config{
		TokenURL:     os.Getenv("POSGATE_URL") + "/oauth/token",
		ClientID:     os.Getenv("CHIMPY_CLIENT_ID"),
		ClientSecret: os.Getenv("CHIMPY_CLIENT_SECRET"),
		Audience:     "https://api.chimpy.example",
		Scopes:       []string{"offline_access", "rentals"},
		Username:     "ann@example.com",
		Password:     os.Getenv("CHIMPY_PASSWORD"),
		Token:        saved,
		Persist:      store.Save,
	}
	ctx := context.Background()
	client := oauth2.NewClient(ctx, cfg.TokenSource(ctx)) // any x/oauth2 consumer works
	resp, err := client.Get(os.Getenv("POSGATE_URL") + "/api/v1/rentals")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, string(body))

	again, _ := store.Load()
	fmt.Println("refresh token saved:", again != nil && again.RefreshToken != "")
	// Output:
	// 200 OK {"rentals":[]}
	// refresh token saved: true
}

// Source.Client adds one renewal to x/oauth2's transport: when the API answers 401 (the token
// was revoked before it expired), it renews the token and sends the request once more.
func ExampleSource_Client() {
	cfg := chimpy.Config{
		TokenURL:     os.Getenv("POSGATE_URL") + "/oauth/token",
		ClientID:     os.Getenv("CHIMPY_CLIENT_ID"),
		ClientSecret: os.Getenv("CHIMPY_CLIENT_SECRET"),
		Audience:     "https://api.chimpy.example",
		Scopes:       []string{"offline_access", "rentals"},
		Username:     "ann@example.com",
		Password:     os.Getenv("CHIMPY_PASSWORD"),
	}
	src := cfg.TokenSource(context.Background())
	resp, err := src.Client(nil).Get(os.Getenv("POSGATE_URL") + "/api/v1/rentals")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}
