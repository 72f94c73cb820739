package cli_test

import (
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/client/identity"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/gateway"
	"github.com/posgate/posgate/internal/keys"
)

// `posgate simulate upstream` checks identities with the key posgate serve signs with (derived
// from the data directory's master key) and answers who the caller is.
func TestSimulateUpstream(t *testing.T) {
	if r := posgate(t, "", "simulate", "upstream", "--data-dir", filepath.Join(t.TempDir(), "none")); r.code != 1 || !strings.Contains(r.stderr, "start posgate first") {
		t.Fatalf("without a master key: %d %s", r.code, r.stderr)
	}

	dir := t.TempDir()
	master, err := keys.LoadMasterKey(dir) // what posgate serve creates on its first start
	if err != nil {
		t.Fatal(err)
	}
	key, err := gateway.SigningKey(config.Default(), master)
	if err != nil {
		t.Fatal(err)
	}
	b := startCommand(t, nil, "", "simulate", "upstream", "--data-dir", dir, "--addr", "127.0.0.1:0")
	waitFor(t, b.stderr, "listening on")
	base := regexp.MustCompile(`http://127\.0\.0\.1:\d+`).FindString(b.stderr.String())

	get := func(sign bool) (int, string) {
		req, _ := http.NewRequest("GET", base+"/orders?x=1", nil)
		if sign {
			s, err := identity.NewSigner(key)
			if err != nil {
				t.Fatal(err)
			}
			p := identity.EncodePrincipal([]byte(`{"dialect":"doshii","means":"doshii.venue","subject":"dl_1","location":"dl_1"}`))
			req.Header.Set(identity.HeaderPrincipal, p)
			req.Header.Set(identity.HeaderSignature, s.Sign("GET", "/orders?x=1", time.Now(), p))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if st, body := get(true); st != 200 || !strings.Contains(body, `"target":"/orders?x=1","caller":{"dialect":"doshii","means":"doshii.venue","subject":"dl_1"`) {
		t.Fatalf("signed: %d %s", st, body)
	}
	if st, body := get(false); st != 401 || !strings.Contains(body, "identity_not_verified") {
		t.Fatalf("unsigned: %d %s", st, body)
	}
	waitFor(t, b.stdout, "GET /orders -> 200 caller=doshii dl_1")
	if code := b.stop(t); code != 0 {
		t.Fatalf("exit %d: %s", code, b.stderr.String())
	}
}
