package chef_test

import (
	"crypto/rand"
	"encoding/base64"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/exampleupstream"
	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/testutil/doctest"
)

// TestDocWalkthrough runs docs/dialects/chef.md against a real posgate on HTTPS and the example
// upstream: its set-up block (with the test's URL), then the sh
// blocks in order in one bash, and each text block of JSON (or of plain words) after an sh block is
// what that block must print, line by line ("…" stands for any text).
func TestDocWalkthrough(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "python3"} {
		doctest.RequireTool(t, tool, "")
	}
	blocks := doctest.Blocks(t, filepath.Join("..", "..", "..", "docs", "dialects", "chef.md"))
	// The upstream is the example one the page tells the reader to start.
	key := make([]byte, 32)
	rand.Read(key)
	h, err := exampleupstream.New(key)
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(h)
	defer up.Close()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, doctest.SetupDataDir)
	inst := servertest.Start(t, servertest.Options{DataDir: dataDir, Configure: func(c *config.Config) {
		c.Server.Addr = "localhost:0" // HTTPS with the generated certificate, as the set-up block expects
		c.Upstreams = map[string]string{"pos": up.URL}
		c.Gateway.SigningSecret = base64.StdEncoding.EncodeToString(key)
	}})
	doctest.WriteAdminToken(t, dataDir, inst.AdminToken)

	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	expect := map[int][]string{}
	sh := 0
	for i, b := range blocks {
		switch lang, body := b.Lang, b.Body; lang {
		case "sh":
			sh++
			if sh == 1 {
				body = doctest.Setup(t, blocks[i], inst.Server.HTTPSURL())
			}
			script.WriteString("printf '\\n@@block " + strconv.Itoa(sh) + "\\n'\n" + body)
		case "text":
			if sh > 0 && !strings.HasPrefix(body, "php ") {
				expect[sh] = append(expect[sh], strings.Split(strings.TrimSpace(body), "\n")...)
			}
		}
	}
	if sh < 6 || len(expect) < 5 {
		t.Fatalf("the doc has %d sh blocks and %d expected outputs", sh, len(expect))
	}
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = dir
	// Debian's python3 first (a pyenv shim may shadow it; only the standard library is used).
	cmd.Env = doctest.Environ("PATH=/usr/bin:" + os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough failed: %v\n%s", err, out)
	}
	got := map[int][]string{}
	block := 0
	for _, line := range strings.Split(string(out), "\n") {
		if n, ok := strings.CutPrefix(line, "@@block "); ok {
			block, _ = strconv.Atoi(n)
			continue
		}
		if line != "" {
			got[block] = append(got[block], line)
		}
	}
	for b, want := range expect {
		if len(got[b]) != len(want) {
			t.Fatalf("block %d printed %d lines, want %d:\n%s", b, len(got[b]), len(want), strings.Join(got[b], "\n"))
		}
		for i := range want {
			if !doctest.Match(want[i], got[b][i]) {
				t.Errorf("block %d line %d:\n got  %s\n want %s", b, i+1, got[b][i], want[i])
			}
		}
	}
}
