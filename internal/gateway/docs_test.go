package gateway

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/store/sqlite"
)

// docBlock returns the fenced block that follows marker in docs/gateway.md.
func docBlock(t *testing.T, marker string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "gateway.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), marker)
	if !ok {
		t.Fatalf("marker %q not in docs/gateway.md", marker)
	}
	_, rest, _ = strings.Cut(rest, "```")
	_, rest, _ = strings.Cut(rest, "\n") // language tag
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("unterminated block")
	}
	return block
}

// The authenticator names the dialects register, which routes list under `auth:`. Stand-ins here; the end-to-end
// test in internal/server loads the same file against the real ones.
var dialectAuthNames = []string{"chimpy", "jackpot.apikey", "jackpot.session", "jackpot.m2m", "doshii.venue", "chef.device"}

func TestDocsConfigExample(t *testing.T) {
	cfg, err := config.Parse([]byte(docBlock(t, "<!-- gateway-example -->")))
	if err != nil {
		t.Fatalf("the documented config does not load: %v", err)
	}
	if len(cfg.Routes) < 7 || len(cfg.Upstreams) != 2 {
		t.Fatalf("example lost its routes: %d routes, %d upstreams", len(cfg.Routes), len(cfg.Upstreams))
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	fwd, err := NewForwarder(cfg, testKey, log, clock.System{})
	if err != nil {
		t.Fatal(err)
	}
	reg := auth.NewRegistry()
	for _, n := range dialectAuthNames {
		reg.Register(n, keyAuth{})
	}
	tokens := newFakeTokens()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "docs.db")) // consume routes claim in the store
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	g, err := NewGateway(&app.Services{Config: cfg, Log: log, Auth: reg, Store: st, Verifier: tokens, Revoker: tokens, Upstream: fwd})
	if err != nil {
		t.Fatalf("the documented routes do not build: %v", err)
	}
	if err := g.Mount(http.NewServeMux(), http.NewServeMux()); err != nil {
		t.Fatal(err)
	}
	var reserve *route
	for _, rt := range g.routes {
		if strings.HasSuffix(rt.path, "reserve-voucher-by-price") {
			reserve = rt
		}
	}
	if reserve == nil || !reserve.cfg.Consume || reserve.cfg.MaxAmountField != "price" {
		t.Fatalf("reservation route not as documented: %+v", reserve)
	}
}

func TestDocsPythonVerifier(t *testing.T) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		if py, err = exec.LookPath("python3"); err != nil {
			t.Skip("python3 not installed")
		}
	}
	e := newEnv(t, []config.Route{{Path: "/api/", Methods: []string{"POST"}, Auth: []string{"test.venue"}, Upstream: "pos"}})
	// The Python side uses the real clock; the fake clock of newEnv starts at the real time.
	if r := e.do("POST", "/api/orders/%C3%A9?x=1&y=a%20b", `{}`, "Authorization", "Bearer loc:L7", "vendor", "acme", "Content-Type", "application/json"); r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	got := e.up.last(t)
	script := docBlock(t, "<!-- python-verifier -->") + `
import sys
key = bytes.fromhex(sys.argv[1])
p = posgate_principal(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], key)
print(json.dumps(p))
try:
    posgate_principal(sys.argv[2], sys.argv[3] + "&z=1", sys.argv[4], sys.argv[5], key)
    print("TAMPERED TARGET ACCEPTED")
except ValueError:
    pass
`
	out, err := exec.Command(py, "-c", script, hex.EncodeToString(testKey), got.Method, got.RequestURI,
		got.Header.Get("X-Posgate-Principal"), got.Header.Get("X-Posgate-Signature")).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "ACCEPTED") {
		t.Fatal(string(out))
	}
	var p map[string]any
	if err := json.Unmarshal(out, &p); err != nil || p["location"] != "L7" || p["means"] != "test.venue" {
		t.Fatalf("python verifier: %s (%v)", out, err)
	}
}
