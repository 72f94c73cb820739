package doshii_test

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/testutil/doctest"
	"github.com/posgate/posgate/internal/testutil/fakeupstream"
)

// TestDocWalkthrough runs docs/dialects/doshii.md against a real posgate, a recording upstream
// and the real POS simulator: the yaml block is the gateway configuration, the python block is
// sign_location_jwt.py, the sh blocks run in order in one bash, and every text block of JSON (or
// plain) lines after an sh block is output that block must print ("…" stands for any text).
func TestDocWalkthrough(t *testing.T) {
	py := doctest.PythonWithJWT(t)
	blocks := doctest.Blocks(t, filepath.Join("..", "..", "..", "docs", "dialects", "doshii.md"))
	dir := t.TempDir()
	w := doctest.NewWalkthrough()
	pyBlocks, yamlBlocks := 0, 0
	var gw doctest.Gateway
	var setup *doctest.Block
	for i, b := range blocks {
		switch b.Lang {
		case "yaml":
			yamlBlocks++
			gw = doctest.DecodeGateway(t, b.Body)
		case "python":
			pyBlocks++
			if err := os.WriteFile(filepath.Join(dir, "sign_location_jwt.py"), []byte(b.Body), 0o600); err != nil {
				t.Fatal(err)
			}
		case "sh":
			if w.ShBlocks() == 0 { // the set-up block, run with the test's URL once posgate is up
				setup = &blocks[i]
				w.Sh("@@setup\n")
				continue
			}
			w.Sh(b.Body)
		case "text":
			w.Expect(b.Body, nil)
		}
	}
	if yamlBlocks != 1 || pyBlocks != 1 || w.ShBlocks() < 11 || w.Expected() < 15 {
		t.Fatalf("doc structure changed: %d yaml, %d python, %d sh blocks, %d expected lines", yamlBlocks, pyBlocks, w.ShBlocks(), w.Expected())
	}

	key := make([]byte, 32)
	rand.Read(key)
	up := fakeupstream.Start(t, key)
	dataDir := filepath.Join(dir, doctest.SetupDataDir)
	inst := servertest.Start(t, servertest.Options{DataDir: dataDir, Configure: func(c *config.Config) {
		c.Server.Addr = "localhost:0" // HTTPS with the generated certificate, as the set-up block expects
		gw.Apply(c, up.URL)
		c.Gateway.SigningSecret = base64.StdEncoding.EncodeToString(key)
	}})

	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(py, filepath.Join(bin, "python3")); err != nil {
		t.Fatal(err)
	}
	// The socket part runs the real simulator, `posgate simulate doshii-pos`, built from this tree.
	if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "posgate"), "github.com/posgate/posgate/cmd/posgate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	doctest.WriteAdminToken(t, dataDir, inst.AdminToken)
	cmd := exec.Command("bash", "-c", strings.Replace(w.Script(), "@@setup\n", doctest.Setup(t, *setup, inst.Server.HTTPSURL()), 1))
	cmd.Dir = dir
	cmd.Env = doctest.Environ("PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough failed: %v\n%s", err, out)
	}
	w.Check(t, out)

	// The upstream received exactly the two allowed venue calls, bound to the first venue, and
	// never a credential; the refused ones never reached it.
	reqs := up.Requests()
	var paths []string
	for _, r := range reqs {
		paths = append(paths, r.Method+" "+r.Path)
		if r.VerifyErr != nil || r.Principal == nil || r.Principal.Dialect != "doshii" || r.Principal.Location == "" {
			t.Errorf("%s %s: identity %+v (%v)", r.Method, r.Path, r.Principal, r.VerifyErr)
		}
		if r.Header.Get("Authorization") != "" || r.Header.Get("Vendor") != "" {
			t.Errorf("credential forwarded on %s %s", r.Method, r.Path)
		}
	}
	if len(paths) != 2 || paths[0] != "GET /pos/v3/orders" || !strings.HasSuffix(paths[1], "/menu") ||
		reqs[0].Principal.Location != reqs[1].Principal.Location || !strings.Contains(paths[1], reqs[0].Principal.Location) {
		t.Errorf("upstream received %q", paths)
	}
	if strings.Contains(inst.Logs(), "pg_vk_") || strings.Contains(inst.Logs(), "pg_lt_") {
		t.Error("a vendor key or location token reached the logs")
	}
}
