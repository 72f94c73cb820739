package config

import (
	"errors"
	"strings"
	"testing"
)

// A file with problems of every kind reports all of them in one error, in line order, each with
// its line; problems from the environment and flags come after, naming their variable or flag.
func TestEveryProblemOfAFileAtOnce(t *testing.T) {
	file := writeFile(t, `server:
  log_level: loud
  bogus: 1
  read_timeout: abc
  trusted_proxies: [10.0.0.0/8, nope]
chef:
  leeway: 500
  leeway: 5
upstreams:
  pos: "http://127.0.0.1:9000/base"
routes:
  - path: /api/
    methods: [GET]
    auth: [chimpy, nobody]
    upstream: pso
  - path: api
    methods: [get]
    auth: [chimpy]
    upstream: pos
    tenant_header: X_Site
`)
	_, err := Load(Options{File: file, Environ: []string{"POSGATE_CHEF_COOLDOWN=soon", "POSGATE_NOPE=1"},
		Flags: map[string]string{"server.addr": "8443"}})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Load: %v", err)
	}
	want := []string{
		`line 2: server.log_level: "loud" is not allowed`,
		`line 3: server.bogus: unknown key "bogus"`,
		`line 4: server.read_timeout: "abc" is not a whole number`,
		`line 5: server.trusted_proxies[1]: "nope" is not an IP address or CIDR`,
		`line 7: chef.leeway: 500 is out of range (0–120 seconds)`,
		`line 8: chef.leeway: key "leeway" repeated (first at line 7)`,
		`line 10: upstreams.pos: "http://127.0.0.1:9000/base" must not have a path`,
		`line 14: routes[0].auth: unknown authenticator "nobody"`,
		`line 15: routes[0].upstream: unknown upstream "pso"; configured upstreams: pos`,
		`line 16: routes[1].path: path "api" must start with /`,
		`line 17: routes[1].methods: method "get" is not allowed`,
		`line 20: routes[1].tenant_header: tenant_header "X_Site" contains an underscore`,
		`environment POSGATE_CHEF_COOLDOWN: chef.cooldown: "soon" is not a whole number`,
		`environment POSGATE_NOPE: not a posgate setting`,
		`flag: server.addr: "8443" is not allowed (HOST:PORT`,
	}
	msg := err.Error()
	last := -1
	for _, w := range want {
		i := strings.Index(msg, w)
		if i < 0 {
			t.Errorf("the error lacks %q", w)
			continue
		}
		if i < last {
			t.Errorf("%q is out of order", w)
		}
		last = i
	}
	if len(e.Problems) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(e.Problems), len(want), msg)
	}
	if !strings.Contains(msg, "posgate.yaml, line 2: ") {
		t.Errorf("file problems do not name the file:\n%s", msg)
	}
}

// A YAML syntax error names the line where the document goes wrong, not the line its enclosing
// block starts on (the parser's own report).
func TestYAMLSyntaxErrorsNameTheRightLine(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want string
	}{
		{"server:\n  addr: \":8443\"\n log_level: info\n", "line 3: not valid YAML: did not find expected key"},
		{"server:\n  addr: \":8443\"\n    log_level: info\n", "line 3: not valid YAML"},
		{"chef:\n  leeway: 1\n  cooldown: 2\n   upstream: pos\n", "line 4: not valid YAML"},
		{"routes:\n  - path: /x\n   methods: [GET]\n", "line 3: not valid YAML"},
		{"server:\n\taddr: \":8443\"\n", "line 2: not valid YAML"},
		{"a: 1\nb: 2\nc: 3\nd: [1, 2\n", "line 4: not valid YAML"},
	} {
		_, err := Parse([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want %q", tc.doc, err, tc.want)
		}
	}
}

// A file that is not YAML is reported together with the environment's problems.
func TestSyntaxErrorAndEnvironmentTogether(t *testing.T) {
	file := writeFile(t, "server:\n  addr: \":8443\"\n log_level: info\n")
	_, err := Load(Options{File: file, Environ: []string{"POSGATE_CHEF_LEEWAYY=1"}})
	if err == nil || !strings.Contains(err.Error(), "line 3: not valid YAML") || !strings.Contains(err.Error(), "POSGATE_CHEF_LEEWAYY") {
		t.Fatalf("%v", err)
	}
}

// The admin CLI's variables may be set in the shell that starts the server.
func TestCLIVariablesAreNotSettings(t *testing.T) {
	if _, err := Load(Options{Environ: []string{"POSGATE_URL=https://127.0.0.1:8443", "POSGATE_CA=ca.pem"}}); err != nil {
		t.Fatal(err)
	}
}

// An anchored block repeated many times is refused after a bounded walk, not walked once per use
// (the cost would be the block's size times the uses).
func TestParseAliasExpansionIsBounded(t *testing.T) {
	const n = 3000
	doc := "upstreams: {pos: http://127.0.0.1:1}\nroutes:\n  - &r {path: /a, upstream: pos, methods: [" +
		strings.Repeat("GET, ", n) + "GET]}\n  - " + strings.Repeat("*r\n  - ", n) + "*r\n"
	_, err := Parse([]byte(doc))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Parse = %v, want an *Error", err)
	}
	found := 0
	for _, p := range e.Problems {
		if strings.Contains(p.Msg, "aliases expand to more than") {
			found++
		}
	}
	if found != 1 {
		t.Fatalf("want one alias-expansion problem, got %d in:\n%v", found, err)
	}
}
