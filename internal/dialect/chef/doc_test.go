package chef_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/testutil/doctest"
)

// TestDocWalkthrough runs docs/dialects/chef.md against a real posgate and a POS upstream: the sh
// blocks in order in one bash, and each text block of JSON (or of plain words) after an sh block is
// what that block must print, line by line ("…" stands for any text).
func TestDocWalkthrough(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "python3"} {
		doctest.RequireTool(t, tool, "")
	}
	blocks := doctest.Blocks(t, filepath.Join("..", "..", "..", "docs", "dialects", "chef.md"))
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID json.RawMessage `json:"id"`
		}
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &req)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(req.ID) + `,"result":{"success":true,"data":{"sales":[]},"error_num":0,"error_message":"","undo_id":null,"undo_type":null,"undo_message":null,"errorForEndUser":null}}`))
	}))
	defer up.Close()
	inst := servertest.Start(t, servertest.Options{Configure: func(c *config.Config) {
		c.Upstreams = map[string]string{"pos": up.URL}
	}})

	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	expect := map[int][]string{}
	sh := 0
	for _, b := range blocks {
		switch lang, body := b.Lang, b.Body; lang {
		case "sh":
			sh++
			script.WriteString("printf '\\n@@block " + strconv.Itoa(sh) + "\\n'\n" + body)
		case "text":
			if sh > 0 && !strings.Contains(body, "export ") && !strings.HasPrefix(body, "php ") {
				expect[sh] = append(expect[sh], strings.Split(strings.TrimSpace(body), "\n")...)
			}
		}
	}
	if sh < 6 || len(expect) < 5 {
		t.Fatalf("the doc has %d sh blocks and %d expected outputs", sh, len(expect))
	}
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = t.TempDir()
	// Debian's python3 first (a pyenv shim may shadow it; only the standard library is used).
	cmd.Env = append(os.Environ(), "POSGATE="+inst.URL, "ADMIN_TOKEN="+inst.AdminToken, "PATH=/usr/bin:"+os.Getenv("PATH"))
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
