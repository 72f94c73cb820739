package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The release build of docs/operations.md, run as written (only the version and the output path
// differ): the binary is static and `posgate version` names the stamped version and the commit.
func TestReleaseBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	script := docShBlock(t, "../../docs/operations.md", "## Release build")
	const version = "v0.0.0-releasetest"
	out := filepath.Join(t.TempDir(), "posgate")
	for _, r := range []struct{ old, new string }{
		{"VERSION=v1.0.0", "VERSION=" + version},
		{"-o posgate ", "-o " + out + " "},
		{"./posgate version", out + " version"},
	} {
		if !strings.Contains(script, r.old) {
			t.Fatalf("the release build block no longer contains %q:\n%s", r.old, script)
		}
		script = strings.ReplaceAll(script, r.old, r.new)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = "../.."
	cmd.Env = cleanEnv()
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("release build: %v\n%s", err, got)
	}
	line := strings.TrimSpace(string(got))
	want := `^posgate ` + regexp.QuoteMeta(version) + ` .*go1\.\S+$`
	if fi, err := os.Stat("../../.git"); err == nil && fi.IsDir() {
		// Built from a checkout (Go does not read a worktree's .git file): the commit and its
		// time are there too.
		want = `^posgate ` + regexp.QuoteMeta(version) + ` [0-9a-f]{12}(\+dirty)? \d{4}-\d\d-\d\dT\S+Z go1\.\S+$`
	}
	if !regexp.MustCompile(want).MatchString(line) {
		t.Errorf("posgate version printed %q, want %s", line, want)
	}

	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the release binary asks for a dynamic loader (PT_INTERP): it is not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the release binary links %v: it is not static", libs)
	}
}
