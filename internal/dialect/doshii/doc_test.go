package doshii_test

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/testutil/doctest"
)

// TestDocWalkthrough runs docs/dialects/doshii.md against a real posgate, a recording upstream
// and the real POS simulator: the yaml block is the gateway configuration, the python block is
// sign_location_jwt.py, the sh blocks run in order in one bash, and every text block of JSON (or
// plain) lines after an sh block is output that block must print ("…" stands for any text).
func TestDocWalkthrough(t *testing.T) {
	py := doctest.PythonWithJWT(t)
	blocks := doctest.Blocks(t, filepath.Join("..", "..", "..", "docs", "dialects", "doshii.md"))
	var gw struct {
		Upstreams map[string]string `yaml:"upstreams"`
		Routes    []config.Route    `yaml:"routes"`
	}
	dir := t.TempDir()
	var script strings.Builder
	// A simulator left running by a failed block is stopped with the shell.
	script.WriteString("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n")
	type expectation struct {
		block int
		text  string
	}
	var expect []expectation
	sh, pyBlocks, yamlBlocks := 0, 0, 0
	var setup *doctest.Block
	for i, b := range blocks {
		lang, body := b.Lang, b.Body
		switch lang {
		case "yaml":
			yamlBlocks++
			dec := yaml.NewDecoder(strings.NewReader(body))
			dec.KnownFields(true)
			if err := dec.Decode(&gw); err != nil {
				t.Fatalf("the doc's gateway configuration does not load: %v", err)
			}
		case "python":
			pyBlocks++
			if err := os.WriteFile(filepath.Join(dir, "sign_location_jwt.py"), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
		case "sh":
			sh++
			if sh == 1 { // the set-up block, run with the test's URL once posgate is up
				setup = &blocks[i]
				body = "@@setup\n"
			}
			script.WriteString("echo '@@block " + strconv.Itoa(sh) + "'\n" + body + "\n")
		case "text":
			for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
				expect = append(expect, expectation{block: sh, text: strings.TrimSpace(line)})
			}
		}
	}
	if yamlBlocks != 1 || pyBlocks != 1 || sh < 11 || len(expect) < 15 {
		t.Fatalf("doc structure changed: %d yaml, %d python, %d sh blocks, %d expected lines", yamlBlocks, pyBlocks, sh, len(expect))
	}

	key := make([]byte, 32)
	rand.Read(key)
	up := newUpstream(t, key)
	dataDir := filepath.Join(dir, doctest.SetupDataDir)
	inst := servertest.Start(t, servertest.Options{DataDir: dataDir, Configure: func(c *config.Config) {
		c.Server.Addr = "localhost:0" // HTTPS with the generated certificate, as the set-up block expects
		c.Routes = gw.Routes
		c.Upstreams = map[string]string{}
		for name := range gw.Upstreams {
			c.Upstreams[name] = up.URL
		}
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
	cmd := exec.Command("bash", "-c", strings.Replace(script.String(), "@@setup\n", doctest.Setup(t, *setup, inst.Server.HTTPSURL()), 1))
	cmd.Dir = dir
	cmd.Env = doctest.Environ("PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough failed: %v\n%s", err, out)
	}
	blockOut := map[int]string{}
	for _, o := range strings.Split(string(out), "@@block ")[1:] {
		n, rest, _ := strings.Cut(o, "\n")
		i, _ := strconv.Atoi(n)
		blockOut[i] = rest
	}
	for _, x := range expect {
		if !doctest.ContainsLine(blockOut[x.block], x.text) {
			t.Errorf("sh block %d printed:\n%s\nwant a line matching %s", x.block, blockOut[x.block], x.text)
		}
	}

	// The upstream received exactly the two allowed venue calls, bound to the first venue, and
	// never a credential; the refused ones never reached it.
	reqs := up.requests()
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
