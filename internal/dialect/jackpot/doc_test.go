package jackpot_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/testutil/doctest"
	"github.com/posgate/posgate/internal/testutil/fakeupstream"
)

// TestDocWalkthrough runs docs/dialects/jackpot.md: its yaml block is the gateway configuration,
// its python block is sign_assertion.py, its sh blocks run in order in one bash, and every text
// block made of JSON lines is output the preceding sh block must print ("…" stands for any text).
func TestDocWalkthrough(t *testing.T) {
	py := doctest.PythonWithJWT(t)
	blocks := doctest.Blocks(t, filepath.Join("..", "..", "..", "docs", "dialects", "jackpot.md"))

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
			if err := os.WriteFile(filepath.Join(dir, "sign_assertion.py"), []byte(b.Body), 0o600); err != nil {
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
			w.Expect(b.Body, func(line string) bool { return strings.HasPrefix(line, "{") })
		}
	}
	if yamlBlocks != 1 || pyBlocks != 1 || w.ShBlocks() < 8 || w.Expected() < 5 {
		t.Fatalf("doc structure changed: %d yaml, %d python, %d sh blocks, %d expected outputs", yamlBlocks, pyBlocks, w.ShBlocks(), w.Expected())
	}

	up := fakeupstream.Start(t, nil)
	dataDir := filepath.Join(dir, doctest.SetupDataDir)
	e := newEnv(t, envOptions{up: up, dataDir: dataDir, configure: func(c *config.Config) {
		c.Server.Addr = "localhost:0" // HTTPS with the generated certificate, as the set-up block expects
		gw.Apply(c, up.URL)
	}})

	// python3 in the walkthrough is one that has PyJWT.
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(py, filepath.Join(bin, "python3")); err != nil {
		t.Fatal(err)
	}
	doctest.WriteAdminToken(t, dataDir, e.inst.AdminToken)
	cmd := exec.Command("bash", "-c", strings.Replace(w.Script(), "@@setup\n", doctest.Setup(t, *setup, e.inst.Server.HTTPSURL()), 1))
	cmd.Dir = dir
	cmd.Env = doctest.Environ("PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough failed: %v\n%s", err, out)
	}
	w.Check(t, out)
	// The upstream saw each means once per forwarded call, never a credential.
	var paths []string
	for _, r := range up.Requests() {
		paths = append(paths, r.Method+" "+r.Path)
		if r.Header.Get("Apikey") != "" || r.Header.Get("Authorization") != "" {
			t.Errorf("credential forwarded on %s %s", r.Method, r.Path)
		}
	}
	want := []string{"GET /v2/stores", "PUT /v2/voucher/v-1001/confirm", "POST /v2/stores/s1/offers/o1/reserve-voucher-by-price"}
	if strings.Join(paths, ",") != strings.Join(want, ",") {
		t.Errorf("upstream received %q; want %q", paths, want)
	}
}
