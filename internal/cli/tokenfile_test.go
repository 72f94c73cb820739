package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/server/servertest"
)

// writeToken writes content to a new file with mode perm (chmod after the write: the umask does
// not apply) and returns its path.
func writeToken(t *testing.T, content string, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
	return p
}

// --token-file reads the token from a file readable by its owner only, without a warning;
// --token still works (documented compatibility) but warns on stderr, without echoing the token.
func TestAdminTokenFile(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	for _, content := range []string{inst.AdminToken, inst.AdminToken + "\n", inst.AdminToken + "\r\n"} {
		r := posgate(t, "", "admin", "keys", "list", "--url", inst.URL, "--token-file", writeToken(t, content, 0o600))
		mustOK(t, r, "keys list --token-file")
		if r.stderr != "" {
			t.Errorf("--token-file printed on stderr: %q", r.stderr)
		}
	}
	// A pipe (what a shell's <(command) names) is private to its owner.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	if _, err := pw.WriteString(inst.AdminToken + "\n"); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	r := posgate(t, "", "admin", "keys", "list", "--url", inst.URL, "--token-file", fmt.Sprintf("/dev/fd/%d", pr.Fd()))
	mustOK(t, r, "keys list --token-file on a pipe")
	// A file wins over the variable.
	r = posgateEnv(t, map[string]string{"POSGATE_ADMIN_TOKEN": "pg_at_wrong"},
		"admin", "keys", "list", "--url", inst.URL, "--token-file", writeToken(t, inst.AdminToken+"\n", 0o400))
	mustOK(t, r, "--token-file over $POSGATE_ADMIN_TOKEN")

	r = posgate(t, "", "admin", "keys", "list", "--url", inst.URL, "--token", inst.AdminToken)
	mustOK(t, r, "keys list --token")
	for _, want := range []string{"warning", "--token", "process list", "--token-file", "$POSGATE_ADMIN_TOKEN"} {
		if !strings.Contains(r.stderr, want) && !(want == "process list" && strings.Contains(r.stderr, "/proc/<pid>/cmdline")) {
			t.Errorf("--token warning %q does not say %q", r.stderr, want)
		}
	}
	if strings.Contains(r.stderr, inst.AdminToken) {
		t.Errorf("the warning echoes the token: %q", r.stderr)
	}
	// The variable is as safe as the file: no warning.
	r = posgateEnv(t, map[string]string{"POSGATE_ADMIN_TOKEN": inst.AdminToken}, "admin", "keys", "list", "--url", inst.URL)
	mustOK(t, r, "keys list with $POSGATE_ADMIN_TOKEN")
	if r.stderr != "" {
		t.Errorf("$POSGATE_ADMIN_TOKEN printed on stderr: %q", r.stderr)
	}
}

// A token file that is not a private file holding one token is refused before any connection,
// with an error that says what to do and never quotes the file.
func TestAdminTokenFileRefusals(t *testing.T) {
	const secret = "pg_at_secret-0123456789abcdef"
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		path string
		want string
	}{
		{"world readable", writeToken(t, secret+"\n", 0o644), "permissions 0644 are too open"},
		{"group readable", writeToken(t, secret+"\n", 0o640), "chmod 600"},
		{"group writable", writeToken(t, secret+"\n", 0o620), "permissions 0620 are too open"},
		{"empty", writeToken(t, "", 0o600), "is empty"},
		{"only a newline", writeToken(t, "\n", 0o600), "is empty"},
		{"two lines", writeToken(t, secret+"\n"+secret+"\n", 0o600), "holds more than the admin token"},
		{"two trailing newlines", writeToken(t, secret+"\n\n", 0o600), "holds more than the admin token"},
		{"a variable assignment", writeToken(t, "export TOKEN "+secret, 0o600), "holds more than the admin token"},
		{"leading space", writeToken(t, " "+secret, 0o600), "holds more than the admin token"},
		{"a NUL", writeToken(t, secret+"\x00", 0o600), "holds more than the admin token"},
		{"too large", writeToken(t, secret+strings.Repeat("x", 5000), 0o600), "is larger than 4096 bytes"},
		{"missing", filepath.Join(dir, "nope"), "no such file"},
		{"a directory", dir, "is a directory"},
	} {
		r := posgate(t, "", "admin", "keys", "list", "--url", "http://127.0.0.1:1", "--token-file", tc.path)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "--token-file") {
			t.Errorf("%s: exit %d, %q; want 1 and %q", tc.name, r.code, r.stderr, tc.want)
		}
		if strings.Contains(r.stderr, "secret-0123") || strings.Contains(r.stderr, "connection refused") {
			t.Errorf("%s: %q quotes the file or tried to connect", tc.name, r.stderr)
		}
	}
	// Both ways at once is a usage error.
	r := posgate(t, "", "admin", "keys", "list", "--url", "http://127.0.0.1:1", "--token", "x", "--token-file", writeToken(t, secret, 0o600))
	if r.code != 2 || !strings.Contains(r.stderr, "not both") {
		t.Errorf("--token with --token-file: exit %d, %q", r.code, r.stderr)
	}
	// The data dir's admin-token file is read the same way (posgate writes it with mode 0600).
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "admin-token"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(data, "admin-token"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = posgate(t, "", "admin", "keys", "list", "--url", "http://127.0.0.1:1", "--data-dir", data)
	if r.code != 1 || !strings.Contains(r.stderr, "too open") || strings.Contains(r.stderr, "secret-0123") {
		t.Errorf("a world-readable <data-dir>/admin-token: exit %d, %q", r.code, r.stderr)
	}
}

// The help says how to pass the token safely.
func TestAdminHelpNamesTheTokenFile(t *testing.T) {
	for _, args := range [][]string{{"admin", "help"}, {"admin", "keys", "list", "-h"}} {
		r := posgate(t, "", args...)
		if !strings.Contains(r.stdout, "token-file") || !strings.Contains(r.stdout, "process list") && !strings.Contains(r.stdout, "cmdline") {
			t.Errorf("%v does not explain --token-file:\n%s", args, r.stdout)
		}
	}
}
