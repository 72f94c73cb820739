package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The README's quickstart, executed as written (only the port differs) against the real binary.
func TestREADMEQuickstart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required under CI=true", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	script := docShBlock(t, "../../README.md", "## Quickstart")
	if !strings.Contains(script, "BASE=http://127.0.0.1:8080") {
		t.Fatal("quickstart does not set BASE as expected")
	}
	bin := buildBinary(t)
	work := t.TempDir()
	addr := freeAddr(t)
	token := "pg_at_readme-test-token-0123456789abcdefghijk"
	startServe(t, bin, filepath.Join(work, "posgate-data"), addr, token)
	// The README reads the generated token file; with POSGATE_ADMIN_TOKEN set there is none, so
	// write it where the README looks.
	os.WriteFile(filepath.Join(work, "posgate-data", "admin-token"), []byte(token+"\n"), 0o600)
	script = strings.ReplaceAll(script, "BASE=http://127.0.0.1:8080", "BASE=http://"+addr)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = work
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("quickstart failed: %v\n%s", err, out)
	}
	for _, want := range []string{`"active": true`, `"scope": "orders:read"`, `"token_type": "Bearer"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("introspection output lacks %s:\n%s", want, out)
		}
	}
}

// docShBlock returns the first sh code block after heading in the page at path: the text a
// reader pastes, which the tests run as written.
func docShBlock(t *testing.T, path, heading string) string {
	t.Helper()
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(page)
	i := strings.Index(text, heading)
	if i < 0 {
		t.Fatalf("%s has no %q section", path, heading)
	}
	m := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(text[i:])
	if m == nil {
		t.Fatalf("no sh block in %s's %q section", path, heading)
	}
	return m[1]
}
