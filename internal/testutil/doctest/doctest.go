// Package doctest holds what the executable documentation tests share: reading the fenced code
// blocks of a Markdown page, matching documented output in which "…" stands for any text, and
// finding the external tools a walkthrough needs (skipped locally, required under CI=true, where
// scripts/test.sh installs them).
package doctest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Block is one fenced code block of a Markdown page.
type Block struct {
	Lang string // the info string after the opening fence, e.g. "sh", "json"; "" when none
	Body string // the lines between the fences, each ending in "\n"
	Line int    // 1-based line of the opening fence, for error messages
}

// Blocks reads the Markdown file at path and returns its fenced code blocks in order.
func Blocks(t testing.TB, path string) []Block {
	t.Helper()
	md, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return ParseBlocks(string(md))
}

// ParseBlocks returns the fenced code blocks of md in order. A fence is a line starting with
// three backticks; the block ends at the next line that is exactly three backticks. A block
// left open at the end of the page is dropped, so a broken page shows up as a missing block.
func ParseBlocks(md string) []Block {
	var out []Block
	var cur *Block
	var body strings.Builder
	for i, line := range strings.Split(md, "\n") {
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &Block{Lang: strings.TrimSpace(strings.TrimPrefix(line, "```")), Line: i + 1}
			body.Reset()
		case cur != nil && strings.TrimSpace(line) == "```":
			cur.Body = body.String()
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			body.WriteString(line)
			body.WriteByte('\n')
		}
	}
	return out
}

// Match reports whether s matches the documented pattern as a whole, where each "…" in pattern
// stands for any run of characters (possibly empty) and everything else must be equal.
func Match(pattern, s string) bool {
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

// ContainsLine reports whether some line of out, with surrounding white space removed, matches
// pattern (see Match).
func ContainsLine(out, pattern string) bool {
	for _, line := range strings.Split(out, "\n") {
		if Match(pattern, strings.TrimSpace(line)) {
			return true
		}
	}
	return false
}

// Unavailable ends a test that needs something the machine lacks: it skips locally and fails
// under CI=true, where a missing tool means the CI image is broken, not that the test may pass.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s: required under CI=true", why)
	}
	t.Skip(why)
}

// RequireTool returns the path of the executable name, or ends the test through Unavailable.
// install says how to get it (e.g. "apt-get install php-cli"); it may be empty.
func RequireTool(t testing.TB, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	why := name + " not installed"
	if install != "" {
		why += " (" + install + ")"
	}
	Unavailable(t, why)
	return ""
}

// PythonWithJWT returns the absolute path of a Python 3 that can import PyJWT (Debian's
// python3-jwt), or ends the test through Unavailable. /usr/bin/python3 comes first: a pyenv shim
// earlier on PATH may not see Debian's packages.
func PythonWithJWT(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/python3", "python3"} {
		if p, err := exec.LookPath(name); err == nil && exec.Command(p, "-c", "import jwt").Run() == nil {
			return p
		}
	}
	Unavailable(t, "no python3 with PyJWT (apt-get install python3-jwt)")
	return ""
}

// What the walkthroughs' set-up blocks say: posgate's default HTTPS address and its self-signed
// certificate in ./posgate-data, trusted by curl through CURL_CA_BUNDLE.
const (
	SetupURL      = "https://localhost:8443"
	SetupCABundle = "export CURL_CA_BUNDLE=posgate-data/tls-cert.pem"
	SetupDataDir  = "posgate-data"
)

// Setup checks a walkthrough's set-up block (it points the shell at posgate, reads the admin
// token from posgate-data and trusts the certificate there) and returns it to run against the
// test's posgate: its HTTPS URL in place of the documented one. The test runs posgate with HTTPS
// and its data directory in SetupDataDir under the script's directory (see WriteAdminToken).
func Setup(t testing.TB, block Block, httpsURL string) string {
	t.Helper()
	if block.Lang != "sh" {
		t.Fatalf("line %d: the set-up block is %q, want sh", block.Line, block.Lang)
	}
	for _, want := range []string{"export POSGATE=" + SetupURL + "\n", "export ADMIN_TOKEN=$(cat posgate-data/admin-token)\n", SetupCABundle} {
		if !strings.Contains(block.Body, want) {
			t.Fatalf("line %d: the set-up block lacks %q:\n%s", block.Line, want, block.Body)
		}
	}
	if !strings.HasPrefix(httpsURL, "https://") {
		t.Fatalf("the set-up block needs posgate on HTTPS, not %s", httpsURL)
	}
	return strings.ReplaceAll(block.Body, SetupURL, httpsURL)
}

// WriteAdminToken writes token where the set-up block reads it (posgate writes the file itself
// when it generates the token; the tests give theirs through the environment).
func WriteAdminToken(t testing.TB, dataDir, token string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dataDir, "admin-token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Environ is the process environment without the variables that change whom curl, OpenSSL or
// PHP trust, so only what a walkthrough sets applies; extra is appended.
func Environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "POSGATE", "ADMIN_TOKEN":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}
