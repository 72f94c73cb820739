package chef_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
)

var fence = regexp.MustCompile("(?ms)^```([a-z]*)\n(.*?)^```")

// TestDocWalkthrough runs docs/dialects/chef.md against a real posgate and a POS upstream: the sh
// blocks in order in one bash, and each text block of JSON (or of plain words) after an sh block is
// what that block must print, line by line ("…" stands for any text).
func TestDocWalkthrough(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required under CI=true", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	md, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "dialects", "chef.md"))
	if err != nil {
		t.Fatal(err)
	}
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
	for _, m := range fence.FindAllStringSubmatch(string(md), -1) {
		switch lang, body := m[1], m[2]; lang {
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
			if !matches(want[i], got[b][i]) {
				t.Errorf("block %d line %d:\n got  %s\n want %s", b, i+1, got[b][i], want[i])
			}
		}
	}
}

// matches compares a documented line with an actual one; "…" in the documented line matches any
// text.
func matches(doc, actual string) bool {
	parts := strings.Split(doc, "…")
	var re strings.Builder
	re.WriteString("^")
	for i, p := range parts {
		if i > 0 {
			re.WriteString(".*")
		}
		re.WriteString(regexp.QuoteMeta(p))
	}
	re.WriteString("$")
	return regexp.MustCompile(re.String()).MatchString(actual)
}
