package jackpot_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/testutil/doctest"
)

// TestDocWalkthrough runs docs/dialects/jackpot.md: its yaml block is the gateway configuration,
// its python block is sign_assertion.py, its sh blocks run in order in one bash, and every text
// block made of JSON lines is output the preceding sh block must print ("…" stands for any text).
func TestDocWalkthrough(t *testing.T) {
	py := doctest.PythonWithJWT(t)
	blocks := doctest.Blocks(t, filepath.Join("..", "..", "..", "docs", "dialects", "jackpot.md"))

	var gw struct {
		Upstreams map[string]string `yaml:"upstreams"`
		Routes    []config.Route    `yaml:"routes"`
	}
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	type expectation struct {
		block int
		text  string
	}
	var expect []expectation
	shBlocks, pyBlocks, yamlBlocks := 0, 0, 0
	dir := t.TempDir()
	var setup *doctest.Block
	for i, b := range blocks {
		switch b.Lang {
		case "yaml":
			yamlBlocks++
			dec := yaml.NewDecoder(strings.NewReader(b.Body))
			dec.KnownFields(true)
			if err := dec.Decode(&gw); err != nil {
				t.Fatalf("the doc's gateway configuration does not load: %v", err)
			}
		case "python":
			pyBlocks++
			if err := os.WriteFile(filepath.Join(dir, "sign_assertion.py"), []byte(b.Body), 0o600); err != nil {
				t.Fatal(err)
			}
		case "sh":
			shBlocks++
			script.WriteString("echo '@@block " + strconv.Itoa(shBlocks) + "'\n")
			if shBlocks == 1 { // the set-up block, run with the test's URL once posgate is up
				setup = &blocks[i]
				script.WriteString("@@setup\n")
				continue
			}
			script.WriteString(b.Body)
		case "text":
			for _, line := range strings.Split(strings.TrimSpace(b.Body), "\n") {
				if strings.HasPrefix(line, "{") {
					expect = append(expect, expectation{block: shBlocks, text: line})
				}
			}
		}
	}
	if yamlBlocks != 1 || pyBlocks != 1 || shBlocks < 8 || len(expect) < 5 {
		t.Fatalf("doc structure changed: %d yaml, %d python, %d sh blocks, %d expected outputs", yamlBlocks, pyBlocks, shBlocks, len(expect))
	}

	up := newUpstream(t)
	dataDir := filepath.Join(dir, doctest.SetupDataDir)
	e := newEnv(t, envOptions{up: up, dataDir: dataDir, configure: func(c *config.Config) {
		c.Server.Addr = "localhost:0" // HTTPS with the generated certificate, as the set-up block expects
		c.Routes = gw.Routes
		c.Upstreams = map[string]string{}
		for name := range gw.Upstreams {
			c.Upstreams[name] = up.URL
		}
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
	cmd := exec.Command("bash", "-c", strings.Replace(script.String(), "@@setup\n", doctest.Setup(t, *setup, e.inst.Server.HTTPSURL()), 1))
	cmd.Dir = dir
	cmd.Env = doctest.Environ("PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough failed: %v\n%s", err, out)
	}
	outputs := strings.Split(string(out), "@@block ")
	blockOut := map[int]string{}
	for _, o := range outputs[1:] {
		n, rest, _ := strings.Cut(o, "\n")
		i, _ := strconv.Atoi(n)
		blockOut[i] = rest
	}
	for _, x := range expect {
		if !doctest.ContainsLine(blockOut[x.block], x.text) {
			t.Errorf("sh block %d printed:\n%s\nwant a line matching %s", x.block, blockOut[x.block], x.text)
		}
	}
	// The upstream saw each means once per forwarded call, never a credential.
	var paths []string
	for _, r := range up.requests() {
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
