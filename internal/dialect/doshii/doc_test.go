package doshii_test

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
)

var fence = regexp.MustCompile("(?ms)^```([a-z]*)\n(.*?)^```")

// pythonWithJWT returns a Python 3 that can import PyJWT (Debian's python3-jwt): the test skips
// without one, and fails under CI=true, where scripts/test.sh installs it.
func pythonWithJWT(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if err := exec.Command(py, "-c", "import jwt").Run(); err == nil {
			return py
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("python3-jwt is required under CI (apt-get install python3-jwt)")
	}
	t.Skip("no python3 with PyJWT (apt-get install python3-jwt)")
	return ""
}

// TestDocWalkthrough runs docs/dialects/doshii.md against a real posgate and a recording upstream:
// the yaml block is the gateway configuration, the python block is sign_location_jwt.py, the sh
// blocks run in order in one bash, and every text block of JSON (or plain) lines after an sh block
// is output that block must print ("…" stands for any text).
func TestDocWalkthrough(t *testing.T) {
	py := pythonWithJWT(t)
	md, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "dialects", "doshii.md"))
	if err != nil {
		t.Fatal(err)
	}
	var gw struct {
		Upstreams map[string]string `yaml:"upstreams"`
		Routes    []config.Route    `yaml:"routes"`
	}
	dir := t.TempDir()
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	type expectation struct {
		block int
		text  string
	}
	var expect []expectation
	sh, pyBlocks, yamlBlocks := 0, 0, 0
	for _, m := range fence.FindAllStringSubmatch(string(md), -1) {
		lang, body := m[1], m[2]
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
			script.WriteString("echo '@@block " + strconv.Itoa(sh) + "'\n" + body)
		case "text":
			if sh == 0 { // the setup block: exports the test provides itself
				continue
			}
			for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
				expect = append(expect, expectation{block: sh, text: strings.TrimSpace(line)})
			}
		}
	}
	if yamlBlocks != 1 || pyBlocks != 1 || sh < 9 || len(expect) < 8 {
		t.Fatalf("doc structure changed: %d yaml, %d python, %d sh blocks, %d expected lines", yamlBlocks, pyBlocks, sh, len(expect))
	}

	key := make([]byte, 32)
	rand.Read(key)
	up := newUpstream(t, key)
	inst := servertest.Start(t, servertest.Options{Configure: func(c *config.Config) {
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
	if err := os.Symlink(py, filepath.Join(bin, "python3")); err != nil && py != "python3" {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "POSGATE="+inst.URL, "ADMIN_TOKEN="+inst.AdminToken,
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
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
		if !matchesWithEllipsis(blockOut[x.block], x.text) {
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

// matchesWithEllipsis reports whether some line of out equals pattern, where "…" in pattern
// stands for any text.
func matchesWithEllipsis(out, pattern string) bool {
	parts := strings.Split(pattern, "…")
	var re strings.Builder
	re.WriteString("^")
	for i, p := range parts {
		if i > 0 {
			re.WriteString(".*")
		}
		re.WriteString(regexp.QuoteMeta(p))
	}
	re.WriteString("$")
	rx := regexp.MustCompile(re.String())
	for _, line := range strings.Split(out, "\n") {
		if rx.MatchString(strings.TrimSpace(line)) {
			return true
		}
	}
	return false
}
