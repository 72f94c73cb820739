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
	"github.com/posgate/posgate/internal/testutil/doctest"
)

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
		return ok && doctest.Match(w, g)
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
			found = found || doctest.Match(strings.TrimSpace(v), gv)
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
		doctest.RequireTool(t, tool, "")
	}
	blocks := doctest.Blocks(t, filepath.Join("..", "..", "..", "docs", "dialects", "chimpy.md"))
	var yamlCfg *config.Config
	var err error
	for _, b := range blocks {
		if b.Lang == "yaml" {
			if yamlCfg, err = config.Parse([]byte(b.Body)); err != nil {
				t.Fatalf("docs line %d: the configuration does not load: %v", b.Line, err)
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
	var shBlocks []doctest.Block
	for _, b := range blocks {
		if b.Lang == "sh" {
			shBlocks = append(shBlocks, b)
			script.WriteString(b.Body + "\nprintf '\\n" + marker + "\\n'\n")
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
		if b.Lang != "sh" {
			continue
		}
		n := 0
		for n < len(shBlocks) && shBlocks[n].Line != b.Line {
			n++
		}
		got := strings.TrimSpace(outputs[n])
		if i+1 >= len(blocks) || (blocks[i+1].Lang != "json" && blocks[i+1].Lang != "http") {
			continue
		}
		want := blocks[i+1]
		where := "docs/dialects/chimpy.md line " + strconv.Itoa(b.Line)
		if want.Lang == "json" {
			checkJSON(t, where, strings.TrimSpace(want.Body), got)
		} else {
			checkHTTP(t, where, strings.TrimSpace(want.Body), got)
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
