package cli_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/cli"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
)

// posgateEnv runs the command line with the given environment variables.
func posgateEnv(t *testing.T, vars map[string]string, args ...string) run {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(args, cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return vars[k] }})
	return run{code, out.String(), errb.String()}
}

// wildcards turns every {name} segment into {} so route templates compare by shape.
var wildcards = regexp.MustCompile(`\{[^}/]*\}`)

func shape(route string) string { return wildcards.ReplaceAllString(route, "{}") }

// Every admin route a running posgate mounts has a CLI command, and every command calls a route
// that is mounted: a new admin route without a command, or a command for a route that is gone,
// fails here.
func TestAdminCommandsMatchTheMountedRoutes(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	mounted := map[string]bool{}
	for _, r := range inst.Server.AdminRoutes() {
		mounted[shape(r)] = true
	}
	if len(mounted) < 10 {
		t.Fatalf("only %d admin routes mounted: %v", len(mounted), inst.Server.AdminRoutes())
	}
	covered := map[string]bool{}
	for name, route := range cli.AdminCommandRoutes() {
		s := shape(route)
		if !mounted[s] {
			t.Errorf("posgate admin %s calls %s, which no module mounts", name, route)
		}
		covered[s] = true
	}
	var missing []string
	for r := range mounted {
		if !covered[r] {
			missing = append(missing, r)
		}
	}
	sort.Strings(missing)
	for _, r := range missing {
		t.Errorf("admin route %s has no posgate admin command", r)
	}
}

// Every admin route the documentation names ("POST /admin/api/v1/…") is mounted.
func TestDocumentedAdminRoutesExist(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	mounted := map[string]bool{}
	for _, r := range inst.Server.AdminRoutes() {
		mounted[shape(r)] = true
	}
	files, _ := filepath.Glob("../../docs/*.md")
	more, _ := filepath.Glob("../../docs/*/*.md")
	files = append(append(files, more...), "../../README.md")
	mention := regexp.MustCompile("(GET|POST|PUT|PATCH|DELETE) /admin/api/v1(/[A-Za-z0-9_{}$/.-]*)")
	seen := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mention.FindAllStringSubmatch(string(data), -1) {
			seen++
			path := strings.TrimRight(m[2], ".")
			if !mounted[shape(m[1]+" "+path)] {
				t.Errorf("%s names %s %s, which no module mounts", filepath.Base(f), m[1], path)
			}
		}
	}
	if seen < 5 {
		t.Fatalf("only %d admin routes found in the documentation: is the pattern right?", seen)
	}
}

// `posgate admin help` fits a 100-column terminal and names every command.
func TestAdminHelpFitsAHundredColumns(t *testing.T) {
	r := posgate(t, "", "admin", "help")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("admin help: %+v", r)
	}
	for i, line := range strings.Split(r.stdout, "\n") {
		if n := utf8.RuneCountInString(line); n > cli.HelpWidth {
			t.Errorf("line %d is %d columns wide (at most %d): %q", i+1, n, cli.HelpWidth, line)
		}
	}
	for name := range cli.AdminCommandRoutes() {
		words := strings.Fields(name)
		noun, verb := strings.Join(words[:len(words)-1], " "), words[len(words)-1]
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(noun) + `\n(?:  .*\n)*  ` + regexp.QuoteMeta(verb) + `\b`).MatchString(r.stdout) {
			t.Errorf("admin help does not list %q", name)
		}
	}
}

// Every command and subcommand answers -h and --help on standard output with exit code 0.
func TestEveryHelpFlagExitsZeroOnStdout(t *testing.T) {
	cmds := [][]string{{}, {"serve"}, {"admin"}, {"token"}, {"simulate"}, {"version"},
		{"token", "chimpy"}, {"token", "jackpot-session"}, {"token", "jackpot-m2m"}, {"token", "doshii-jwt"}, {"token", "chef"},
		{"simulate", "orderpay-pos"}, {"simulate", "doshii-pos"}, {"admin", "gateway", "signing-key"}}
	for name := range cli.AdminCommandRoutes() {
		cmds = append(cmds, append([]string{"admin"}, strings.Fields(name)...))
	}
	for _, c := range cmds {
		for _, h := range []string{"-h", "--help"} {
			args := append(slices.Clone(c), h)
			r := posgate(t, "", args...)
			if len(c) == 0 || c[0] == "version" {
				continue // `posgate -h` is the top-level usage; version takes no flags
			}
			if r.code != 0 || r.stdout == "" || r.stderr != "" {
				t.Errorf("%v: exit %d, stdout %d bytes, stderr %q", args, r.code, len(r.stdout), r.stderr)
			}
		}
	}
	if r := posgate(t, "", "--help"); r.code != 0 || !strings.Contains(r.stdout, "usage") {
		t.Errorf("--help: %+v", r)
	}
}

// A resource named without its verb gets the list of verbs, for every resource.
func TestMissingVerbListsTheVerbs(t *testing.T) {
	next := map[string][]string{} // prefix → words that may follow, in order
	for name := range cli.AdminCommandRoutes() {
		words := strings.Fields(name)
		for i := 1; i < len(words); i++ {
			p := strings.Join(words[:i], " ")
			if !slices.Contains(next[p], words[i]) {
				next[p] = append(next[p], words[i])
			}
		}
	}
	if len(next) < 8 {
		t.Fatalf("only %d resources", len(next))
	}
	for prefix, words := range next {
		r := posgate(t, "", append([]string{"admin"}, strings.Fields(prefix)...)...)
		if r.code != 2 || !strings.Contains(r.stderr, "missing verb: ") && !strings.Contains(r.stderr, "missing resource") {
			t.Errorf("admin %s: exit %d, %q", prefix, r.code, r.stderr)
			continue
		}
		for _, wd := range words {
			if !strings.Contains(r.stderr, wd) {
				t.Errorf("admin %s: %q does not offer %q", prefix, r.stderr, wd)
			}
		}
	}
	r := posgate(t, "", "admin", "clients")
	if !strings.Contains(r.stderr, "clients: missing verb: create|list|get|disable") {
		t.Errorf("admin clients: %q", r.stderr)
	}
	if r = posgate(t, "", "admin", "doshii"); !strings.Contains(r.stderr, "doshii: missing resource: vendors|locations") {
		t.Errorf("admin doshii: %q", r.stderr)
	}
	r = posgate(t, "", "admin", "clients", "explode")
	if r.code != 2 || !strings.Contains(r.stderr, `unknown command "clients explode"`) || !strings.Contains(r.stderr, "create|list") {
		t.Errorf("admin clients explode: %+v", r)
	}
}

// The base URL, admin token and data dir come from flags, else the environment, else defaults.
func TestAdminConnectionFromTheEnvironment(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	// Neither --url nor --token: both from the environment.
	r := posgateEnv(t, map[string]string{"POSGATE_URL": inst.URL, "POSGATE_ADMIN_TOKEN": inst.AdminToken}, "admin", "keys", "list")
	mustOK(t, r, "keys list with POSGATE_URL and POSGATE_ADMIN_TOKEN")
	if !strings.Contains(r.stdout, "active") {
		t.Errorf("keys list: %s", r.stdout)
	}
	// The token from the data dir named by POSGATE_SERVER_DATA_DIR (the variable serve reads).
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admin-token"), []byte(inst.AdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = posgateEnv(t, map[string]string{"POSGATE_URL": inst.URL, "POSGATE_SERVER_DATA_DIR": dir}, "admin", "keys", "list")
	mustOK(t, r, "keys list with POSGATE_SERVER_DATA_DIR")
	// A flag wins over its variable.
	r = posgateEnv(t, map[string]string{"POSGATE_URL": "http://127.0.0.1:1", "POSGATE_ADMIN_TOKEN": "pg_at_wrong"},
		"admin", "keys", "list", "--url", inst.URL, "--token", inst.AdminToken)
	mustOK(t, r, "flags over the environment")
	// The environment is used, not ignored: a wrong URL there fails.
	r = posgateEnv(t, map[string]string{"POSGATE_URL": "http://127.0.0.1:1", "POSGATE_ADMIN_TOKEN": inst.AdminToken}, "admin", "keys", "list")
	if r.code != 1 {
		t.Errorf("POSGATE_URL ignored: %+v", r)
	}
	// The precedence is documented in each command's help and in admin help.
	r = posgate(t, "", "admin", "keys", "list", "--help")
	for _, want := range []string{"$POSGATE_URL", "$POSGATE_ADMIN_TOKEN", "$POSGATE_SERVER_DATA_DIR", "$POSGATE_CA", "https://127.0.0.1:8443"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("keys list --help does not mention %s:\n%s", want, r.stdout)
		}
	}
	if r = posgate(t, "", "admin", "help"); !strings.Contains(r.stdout, "$POSGATE_URL") {
		t.Errorf("admin help does not mention $POSGATE_URL")
	}
}

// A URL without a scheme is refused before any connection, with the URL it probably meant.
func TestURLWithoutSchemeIsExplained(t *testing.T) {
	for _, tc := range []struct {
		vars map[string]string
		args []string
		want string
	}{
		{nil, []string{"admin", "keys", "list", "--url", "127.0.0.1:8443", "--token", "x"}, `--url "127.0.0.1:8443" has no scheme: did you mean https://127.0.0.1:8443`},
		{nil, []string{"admin", "keys", "list", "--url", "localhost:8443", "--token", "x"}, "did you mean https://localhost:8443"},
		{map[string]string{"POSGATE_URL": "posgate.example:8443"}, []string{"admin", "keys", "list", "--token", "x"}, `$POSGATE_URL "posgate.example:8443" has no scheme: did you mean https://posgate.example:8443`},
		{nil, []string{"admin", "keys", "list", "--url", "ftp://h", "--token", "x"}, "want http(s)://HOST[:PORT]"},
		{nil, []string{"simulate", "doshii-pos", "--url", "127.0.0.1:8443", "--location-token", "x"}, "did you mean https://127.0.0.1:8443"},
	} {
		r := posgateEnv(t, tc.vars, tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

// The admin token never travels unencrypted to another machine unless --insecure says so; a
// loopback listener on plain HTTP stays the zero-setup default.
func TestPlainHTTPToAnotherMachineIsRefused(t *testing.T) {
	for _, tc := range []struct {
		vars    map[string]string
		args    []string
		refused bool
	}{
		{nil, []string{"--url", "http://posgate.example:8080"}, true},
		{nil, []string{"--url", "http://10.1.2.3:8080"}, true},
		{map[string]string{"POSGATE_URL": "http://posgate.example"}, nil, true},
		{nil, []string{"--url", "http://posgate.example:8080", "--insecure"}, false},
		{nil, []string{"--url", "http://127.0.0.1:1"}, false},
		{nil, []string{"--url", "http://localhost:1"}, false},
		{nil, []string{"--url", "http://[::1]:1"}, false},
	} {
		r := posgateEnv(t, tc.vars, append([]string{"admin", "keys", "list", "--token", "x"}, tc.args...)...)
		refused := strings.Contains(r.stderr, "unencrypted to another machine")
		if refused != tc.refused || r.code == 0 {
			t.Errorf("%v %v: exit %d, refused %v, want %v: %q", tc.vars, tc.args, r.code, refused, tc.refused, r.stderr)
		}
		if tc.refused && r.code != 2 {
			t.Errorf("%v: exit %d, want 2 (a usage error, before any connection)", tc.args, r.code)
		}
	}
}

// The commands added for the routes that had none work end to end.
func TestAdminCommandsForEveryRoute(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{Demo: true})

	r, u := admin(t, inst, "a long enough password\n", "users", "create", "--username", "bob", "--password", "-", "-o", "json")
	mustOK(t, r, "users create")
	uid := str(u["id"])
	disableEnable(t, inst, uid, "users", func() {
		r, got := admin(t, inst, "", "users", "get", uid, "-o", "json")
		mustOK(t, r, "users get")
		if got["username"] != "bob" || got["disabled"] != true {
			t.Errorf("users get: %v", got)
		}
	})
	r, v := admin(t, inst, "", "doshii", "vendors", "create", "--api-name", "cli-vendor", "-o", "json")
	mustOK(t, r, "doshii vendors create")
	disableEnable(t, inst, str(v["id"]), "doshii vendors", nil)

	// The demo seeded a doshii location.
	r, got := admin(t, inst, "", "doshii", "locations", "list", "-o", "json")
	mustOK(t, r, "doshii locations list")
	locs, _ := got["locations"].([]any)
	if len(locs) == 0 {
		t.Fatalf("no doshii location: %v", got)
	}
	loc := str(locs[0].(map[string]any)["id"])
	r, _ = admin(t, inst, "", "doshii", "locations", "list", "--vendor", "dv_none")
	mustOK(t, r, "doshii locations list --vendor")
	if strings.Contains(r.stdout, loc) || !strings.Contains(r.stdout, "ONLINE") {
		t.Errorf("locations of another vendor:\n%s", r.stdout)
	}
	r, got = admin(t, inst, "", "doshii", "locations", "get", loc, "-o", "json")
	mustOK(t, r, "doshii locations get")
	if str(got["id"]) != loc {
		t.Errorf("locations get: %v", got)
	}
	disableEnable(t, inst, loc, "doshii locations", nil)
	r, got = admin(t, inst, "", "doshii", "locations", "rotate-token", loc, "-o", "json")
	mustOK(t, r, "doshii locations rotate-token")
	if str(got["token"]) == "" {
		t.Errorf("rotate-token: %v", got)
	}

	r, _ = admin(t, inst, "", "chef", "devices", "get", "dev_nonexistent")
	if r.code != 1 || !strings.Contains(r.stderr, "404") {
		t.Errorf("chef devices get unknown: %+v", r)
	}
	r, _ = admin(t, inst, "", "gateway", "routes")
	mustOK(t, r, "gateway routes")
	if !strings.Contains(r.stdout, "METHODS") {
		t.Errorf("gateway routes:\n%s", r.stdout)
	}

	// introspect: active with its claims, then inactive with the reason once revoked.
	r, cl := admin(t, inst, "", "clients", "create", "--name", "i", "--grant-types", "client_credentials", "--scopes", "a", "-o", "json")
	mustOK(t, r, "clients create")
	tok := clientToken(t, inst, str(cl["client_id"]), str(cl["client_secret"]))
	r, got = admin(t, inst, tok+"\n", "tokens", "introspect", "-", "-o", "json")
	mustOK(t, r, "tokens introspect")
	if got["active"] != true || got["client_id"] != cl["id"] || got["scope"] != "a" {
		t.Errorf("introspect: %v", got)
	}
	r, _ = admin(t, inst, "", "tokens", "revoke", tok)
	mustOK(t, r, "tokens revoke")
	r, got = admin(t, inst, "", "tokens", "introspect", tok, "-o", "json")
	mustOK(t, r, "tokens introspect (revoked)")
	if got["active"] != false || !strings.Contains(str(got["reason"]), "revoked") {
		t.Errorf("introspect revoked: %v", got)
	}
	r, got = admin(t, inst, "", "tokens", "introspect", "not.a.token", "-o", "json")
	mustOK(t, r, "tokens introspect (garbage)")
	if got["active"] != false {
		t.Errorf("introspect garbage: %v", got)
	}
	if raw, _ := json.Marshal(got); strings.Contains(string(raw), "not.a.token") {
		t.Errorf("the answer echoes the token: %s", raw)
	}
}

// serve reports every problem of its configuration at once, with lines, and creates nothing.
func TestServeRefusesABadConfigurationWithoutTouchingDisk(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "posgate.yaml")
	os.WriteFile(file, []byte("server:\n  log_level: loud\n  bogus: 1\nroutes:\n  - {path: /api/, methods: [GET], auth: [nobody], upstream: pos}\n"), 0o600)
	data := filepath.Join(dir, "data")
	r := posgate(t, "", "serve", "--config", file, "--data-dir", data, "--http-addr", "127.0.0.1:0")
	if r.code != 1 {
		t.Fatalf("serve: %+v", r)
	}
	for _, want := range []string{"line 2: server.log_level", "line 3: server.bogus", `line 5: routes[0].auth: unknown authenticator "nobody"`, "line 5: routes[0].upstream"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("serve's error lacks %q:\n%s", want, r.stderr)
		}
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("the data dir was created: %v", err)
	}
}

// Every POSGATE_ variable the command line reads may be set in the shell that starts the server:
// `posgate serve` refuses unknown POSGATE_ variables, so one the CLI reads must be known to it.
func TestVariablesTheCLIReadsDoNotStopServe(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	name := regexp.MustCompile(`"(POSGATE_[A-Z_]+)"`)
	var environ []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range name.FindAllStringSubmatch(string(src), -1) {
			environ = append(environ, m[1]+"="+filepath.Join(t.TempDir(), "x"))
		}
	}
	if len(environ) < 8 {
		t.Fatalf("only %d variables found", len(environ))
	}
	if _, err := config.Load(config.Options{Environ: environ}); err != nil {
		t.Errorf("serve would refuse the CLI's variables: %v", err)
	}
}

// disableEnable disables the resource id with `posgate admin <resource> disable`, runs between
// (may be nil) while it is disabled, enables it again and returns the enable answer.
func disableEnable(t *testing.T, inst *servertest.Instance, id, resource string, between func()) map[string]any {
	t.Helper()
	var got map[string]any
	for _, verb := range []string{"disable", "enable"} {
		var r run
		r, got = admin(t, inst, "", append(strings.Fields(resource), verb, id, "-o", "json")...)
		mustOK(t, r, resource+" "+verb)
		if got["disabled"] != (verb == "disable") {
			t.Errorf("%s %s: %v", resource, verb, got)
		}
		if verb == "disable" && between != nil {
			between()
		}
	}
	return got
}
