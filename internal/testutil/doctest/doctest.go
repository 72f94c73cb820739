// Package doctest holds what the executable documentation tests share: reading the fenced code
// blocks of a Markdown page, matching documented output in which "…" stands for any text, and
// finding the external tools a walkthrough needs (skipped locally, required under CI=true, where
// scripts/test.sh installs them).
package doctest

import (
	"os"
	"os/exec"
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
