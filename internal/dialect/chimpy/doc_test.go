package chimpy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
)

// docBlock is one fenced code block of a Markdown file.
type docBlock struct {
	lang, text string
	line       int
}

func fencedBlocks(md string) []docBlock {
	var out []docBlock
	var cur *docBlock
	var buf []string
	for i, line := range strings.Split(md, "\n") {
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &docBlock{lang: strings.TrimSpace(strings.TrimPrefix(line, "```")), line: i + 1}
			buf = nil
		case cur != nil && strings.TrimSpace(line) == "```":
			cur.text = strings.Join(buf, "\n")
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			buf = append(buf, line)
		}
	}
	return out
}

// globMatch matches s against a pattern in which "…" stands for any run of characters.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "…")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// jsonMatch compares a decoded JSON value with the documented one: same keys, equal values, and
// documented strings containing "…" matched as globs.
func jsonMatch(want, got any) bool {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for k, v := range w {
			gv, ok := g[k]
			if !ok || !jsonMatch(v, gv) {
				return false
			}
		}
		return true
	case string:
		g, ok := got.(string)
		return ok && globMatch(w, g)
	default:
		return reflect.DeepEqual(want, got)
	}
}

func checkJSON(t *testing.T, where, want, got string) {
	t.Helper()
	var w, g any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: the documented output is not JSON: %v", where, err)
	}
	if err := json.Unmarshal([]byte(got), &g); err != nil || !jsonMatch(w, g) {
		t.Fatalf("%s: the command printed\n%s\nbut the page shows\n%s", where, got, want)
	}
}

// checkHTTP compares `curl -i` output with a documented response: the status code, each
// documented header (name case-insensitive, value as a glob), and the body as JSON.
func checkHTTP(t *testing.T, where, want, got string) {
	t.Helper()
	got = strings.ReplaceAll(got, "\r\n", "\n")
	wHead, wBody, _ := strings.Cut(want, "\n\n")
	gHead, gBody, _ := strings.Cut(got, "\n\n")
	wLines, gLines := strings.Split(wHead, "\n"), strings.Split(gHead, "\n")
	if strings.Fields(wLines[0])[1] != strings.Fields(gLines[0])[1] {
		t.Fatalf("%s: status %q, the page shows %q", where, gLines[0], wLines[0])
	}
	headers := map[string][]string{}
	for _, l := range gLines[1:] {
		k, v, _ := strings.Cut(l, ":")
		headers[strings.ToLower(k)] = append(headers[strings.ToLower(k)], strings.TrimSpace(v))
	}
	for _, l := range wLines[1:] {
		k, v, _ := strings.Cut(l, ":")
		found := false
		for _, gv := range headers[strings.ToLower(k)] {
			found = found || globMatch(strings.TrimSpace(v), gv)
		}
		if !found {
			t.Fatalf("%s: header %q not in the answer:\n%s", where, l, gHead)
		}
	}
	checkJSON(t, where, strings.TrimSpace(wBody), strings.TrimSpace(gBody))
}

// TestChimpyWalkthrough executes docs/dialects/chimpy.md: its configuration block configures a
// real posgate (the upstream replaced by a test server), its sh blocks run in order in one bash
// with curl and jq, and each output block is compared with what the command before it printed.
func TestChimpyWalkthrough(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is needed to execute the chimpy walkthrough", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	md, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "dialects", "chimpy.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := fencedBlocks(string(md))
	var yamlCfg *config.Config
	for _, b := range blocks {
		if b.lang == "yaml" {
			if yamlCfg, err = config.Parse([]byte(b.text)); err != nil {
				t.Fatalf("docs line %d: the configuration does not load: %v", b.line, err)
			}
			break
		}
	}
	if yamlCfg == nil || len(yamlCfg.Routes) == 0 {
		t.Fatal("the page has no route configuration")
	}

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" || r.Header.Get("X-Posgate-Principal") == "" {
			http.Error(w, "credential forwarded or identity missing", 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"rentals":[]}`))
	}))
	defer up.Close()
	inst := servertest.Start(t, servertest.Options{Configure: func(c *config.Config) {
		c.Upstreams = map[string]string{}
		for name := range yamlCfg.Upstreams {
			c.Upstreams[name] = up.URL
		}
		c.Routes = yamlCfg.Routes
		c.Chimpy = yamlCfg.Chimpy
	}})

	// One script: each sh block, then a marker, so the output splits per block.
	const marker = "@@@ end of block @@@"
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	var shBlocks []docBlock
	for _, b := range blocks {
		if b.lang == "sh" {
			shBlocks = append(shBlocks, b)
			script.WriteString(b.text + "\nprintf '\\n" + marker + "\\n'\n")
		}
	}
	if len(shBlocks) < 6 {
		t.Fatalf("only %d sh blocks in the page", len(shBlocks))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "POSGATE="+inst.URL, "ADMIN_TOKEN="+inst.AdminToken)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the walkthrough failed: %v\n%s", err, out)
	}
	outputs := strings.Split(string(out), "\n"+marker+"\n")
	if len(outputs) != len(shBlocks)+1 {
		t.Fatalf("%d outputs for %d blocks:\n%s", len(outputs)-1, len(shBlocks), out)
	}

	checked := 0
	for i, b := range blocks {
		if b.lang != "sh" {
			continue
		}
		n := 0
		for n < len(shBlocks) && shBlocks[n].line != b.line {
			n++
		}
		got := strings.TrimSpace(outputs[n])
		if i+1 >= len(blocks) || (blocks[i+1].lang != "json" && blocks[i+1].lang != "http") {
			continue
		}
		want := blocks[i+1]
		where := "docs/dialects/chimpy.md line " + strconv.Itoa(b.line)
		if want.lang == "json" {
			checkJSON(t, where, strings.TrimSpace(want.text), got)
		} else {
			checkHTTP(t, where, strings.TrimSpace(want.text), got)
		}
		checked++
	}
	if checked < 6 {
		t.Fatalf("only %d outputs were checked", checked)
	}
	// What the page promises happened: reuse was audited.
	events, _ := inst.Svc.Store.ListAudit(t.Context(), 100)
	reuse := false
	for _, e := range events {
		reuse = reuse || e.Action == "token.refresh_reuse"
	}
	if !reuse {
		t.Fatal("the reuse in the walkthrough was not audited")
	}
}
