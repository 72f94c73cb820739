package cli_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/cli"
)

const leak = "pg_zz_do-not-print-0123456789"

// runWith runs the command line with stdin and the environment variables vars. Its context is
// done: a simulator that got its secret stops at once instead of connecting.
func runWith(stdin *os.File, vars map[string]string, args ...string) run {
	var out, errb bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	env := cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return vars[k] }, Context: ctx}
	if stdin != nil {
		env.Stdin = stdin
	}
	code := cli.Run(args, env)
	return run{code, out.String(), errb.String()}
}

// Every file flag that takes a secret reads it as --token-file does: a file its group or others
// may read, or one that holds more than the secret, is refused before anything is sent, and the
// error never quotes the file.
func TestEverySecretFileFollowsTheTokenFileRules(t *testing.T) {
	vars := map[string]string{"POSGATE_PASSWORD": "pw", "POSGATE_JACKPOT_API_KEY": "key", "POSGATE_DOSHII_VENDOR_KEY": "vk"}
	chimpy := w("token chimpy --url http://127.0.0.1:1/oauth/token --client-id c --username u")
	jackpot := w("--url http://127.0.0.1:1 --amount 1")
	sim := w("--url http://127.0.0.1:1 --data-dir " + t.TempDir())
	for _, tc := range []struct {
		flag string
		args []string
	}{
		{"--token-file", w("admin keys list --url http://127.0.0.1:1")},
		{"--client-secret-file", chimpy},
		{"--password-file", chimpy},
		{"--api-key-file", append(w("token jackpot-session"), jackpot...)},
		{"--api-signature-file", append(w("token jackpot-session"), jackpot...)},
		{"--client-secret-file", w("token jackpot-m2m --url http://127.0.0.1:1")},
		{"--vendor-key-file", w("token doshii-jwt")},
		{"--location-token-file", w("token doshii-jwt")},
		{"--secret-file", append(w("simulate orderpay-pos --outlet o --pos-remote-id p"), sim...)},
		{"--location-token-file", append(w("simulate doshii-pos"), sim...)},
		{"--vendor-key-file", append(w("simulate doshii-pos --vendor v"), sim...)},
	} {
		for _, bad := range []struct {
			content string
			perm    os.FileMode
			want    string
		}{
			{leak + "\n", 0o644, "chmod 600"},
			{leak + "\n", 0o640, "permissions 0640 are too open"},
			{leak + "\n" + leak + "\n", 0o600, "holds more than"},
			{"", 0o600, "is empty"},
		} {
			args := append(append([]string{}, tc.args...), tc.flag, writeToken(t, bad.content, bad.perm))
			r := runWith(nil, vars, args...)
			if r.code != 1 || !strings.Contains(r.stderr, bad.want) || !strings.Contains(r.stderr, tc.flag) {
				t.Errorf("%v %o: exit %d, %q; want 1 and %q", args[:3], bad.perm, r.code, r.stderr, bad.want)
			}
			if strings.Contains(r.stderr+r.stdout, "do-not-print") || strings.Contains(r.stderr, "refused") {
				t.Errorf("%v: %q quotes the file or tried to connect", args[:3], r.stderr)
			}
		}
	}
	// A private file works, and a password may hold spaces where a token may not.
	r := runWith(nil, nil, "token", "doshii-jwt", "--vendor-key-file", writeToken(t, "pg_vk_key\n", 0o600),
		"--location-token-file", writeToken(t, "pg_lt_x\r\n", 0o400))
	mustOK(t, r, "doshii-jwt from private files")
	r = runWith(nil, nil, append(chimpy, "--password-file", writeToken(t, "correct horse battery staple\n", 0o600))...)
	if strings.Contains(r.stderr, "password-file") {
		t.Errorf("a password with spaces was refused: %q", r.stderr)
	}
}

// "-" reads standard input with the same rules: a pipe is read as it is, a regular file
// redirected to it must be private like a named one.
func TestSecretFromStandardInput(t *testing.T) {
	vars := map[string]string{"POSGATE_ADMIN_TOKEN": "pg_at_x"}
	args := w("admin users create --username bob --password - --url http://127.0.0.1:1")
	open := func(perm os.FileMode) *os.File {
		f, err := os.Open(writeToken(t, leak+"\n", perm))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	r := runWith(open(0o644), vars, args...)
	if r.code != 1 || !strings.Contains(r.stderr, "--password - (standard input)") || !strings.Contains(r.stderr, "too open") || strings.Contains(r.stderr, "do-not-print") {
		t.Errorf("a world-readable file as standard input: exit %d, %q", r.code, r.stderr)
	}
	r = runWith(open(0o600), vars, args...)
	if !strings.Contains(r.stderr, "refused") || strings.Contains(r.stderr, "--password") {
		t.Errorf("a private file as standard input: %q", r.stderr)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	pw.WriteString(leak + "\n" + leak + "\n")
	pw.Close()
	r = runWith(pr, map[string]string{"POSGATE_DOSHII_VENDOR_KEY": "vk"}, w("token doshii-jwt --location-token-file -")...)
	if r.code != 1 || !strings.Contains(r.stderr, "--location-token-file - (standard input) holds more than the location token") || strings.Contains(r.stderr, "do-not-print") {
		t.Errorf("two lines on a pipe: exit %d, %q", r.code, r.stderr)
	}
}

// Every way of giving a secret on the command line works but warns on stderr, naming the safer
// ways and never echoing the secret; the flag and its file together are a usage error.
func TestEverySecretOnTheCommandLineWarns(t *testing.T) {
	vars := map[string]string{"POSGATE_ADMIN_TOKEN": "pg_at_x", "POSGATE_ORDERPAY_AUTH_SECRET": "from-env"}
	adm := " --url http://127.0.0.1:1"
	sim := " --url 127.0.0.1:8443"
	for _, tc := range []struct {
		args  string
		flag  string
		safer []string
	}{
		{"admin keys list" + adm + " --token", "--token", []string{"--token-file", "$POSGATE_ADMIN_TOKEN"}},
		{"admin users create --username bob" + adm + " --password", "--password", []string{`"-"`}},
		{"admin users password us_1" + adm + " --password", "--password", []string{`"-"`}},
		{"admin orderpay outlets create --provider-outlet-id o --pos-remote-id p --provider-id 1 --provider-name n" + adm + " --auth-secret", "--auth-secret", []string{`"-"`}},
		{"admin orderpay outlets secret op_1" + adm + " --auth-secret", "--auth-secret", []string{`"-"`}},
		{"admin tokens revoke" + adm, "the TOKEN argument", []string{`"-"`}},
		{"admin tokens introspect" + adm, "the TOKEN argument", []string{`"-"`}},
		{"simulate orderpay-pos --outlet o --pos-remote-id p" + sim + " --secret", "--secret", []string{"--secret-file", "$POSGATE_ORDERPAY_AUTH_SECRET"}},
		{"simulate doshii-pos" + sim + " --location-token", "--location-token", []string{"--location-token-file", "$POSGATE_DOSHII_LOCATION_TOKEN"}},
		{"simulate doshii-pos --vendor v" + sim + " --vendor-key", "--vendor-key", []string{"--vendor-key-file", "$POSGATE_DOSHII_VENDOR_KEY"}},
	} {
		r := runWith(nil, vars, append(w(tc.args), leak)...)
		for _, want := range append([]string{"warning: " + tc.flag, "/proc/<pid>/cmdline"}, tc.safer...) {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("%s: %q does not say %q", tc.args, r.stderr, want)
			}
		}
		if strings.Contains(r.stderr, "do-not-print") {
			t.Errorf("%s: the warning echoes the secret: %q", tc.args, r.stderr)
		}
	}
	for _, args := range []string{
		"simulate orderpay-pos --outlet o --pos-remote-id p --secret x --secret-file -",
		"simulate doshii-pos --location-token x --location-token-file -",
		"simulate doshii-pos --vendor v --vendor-key x --vendor-key-file -",
	} {
		if r := runWith(nil, nil, w(args)...); r.code != 2 || !strings.Contains(r.stderr, "not both") {
			t.Errorf("%s: exit %d, %q", args, r.code, r.stderr)
		}
	}
}

func w(s string) []string { return strings.Fields(s) }
