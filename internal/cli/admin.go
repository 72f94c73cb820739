package cli

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/server"
)

func w(s string) []string { return strings.Fields(s) }

// The environment variables the admin CLI (and the simulators) read when the flag is not given:
// set them once in a shell instead of repeating --url and --data-dir on every call.
const (
	envURL        = "POSGATE_URL"
	envAdminToken = "POSGATE_ADMIN_TOKEN"
	envDataDir    = "POSGATE_SERVER_DATA_DIR" // the variable `serve` reads server.data_dir from
	envCA         = "POSGATE_CA"
	defaultURL    = "https://127.0.0.1:8443"
	defaultData   = "./posgate-data"
)

// adminFlags are common to every admin command.
type adminFlags struct {
	url       string
	token     string
	tokenFile string
	dataDir   string
	insecure  bool
	ca        string
	output    string
}

// register adds the connection flags to fs. Their defaults come from the environment (see
// resolve), so a flag always wins over its variable.
func (af *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&af.url, "url", "", "base URL of posgate (default $"+envURL+", else "+defaultURL+")")
	fs.StringVar(&af.tokenFile, "token-file", "", "file holding the admin token, readable by its owner only (default $"+envAdminToken+", else <data-dir>/admin-token)")
	fs.StringVar(&af.token, "token", "", "admin token on the command line: other users see it in the process list; prefer --token-file or $"+envAdminToken)
	fs.StringVar(&af.dataDir, "data-dir", "", "the server's data dir: admin token and pinned certificate (default $"+envDataDir+", else "+defaultData+")")
	fs.BoolVar(&af.insecure, "insecure", false, "do not verify the server's TLS certificate, and allow plain http:// to a host other than this machine")
	fs.StringVar(&af.ca, "ca", "", "PEM file of the CA (or self-signed certificate) to trust (default $"+envCA+")")
	fs.StringVar(&af.output, "o", "table", "output: table or json")
}

// resolve fills what the flags left empty from the environment, then the built-in defaults, and
// checks the URL.
func (af *adminFlags) resolve(env Env) error {
	urlFrom := "--url"
	if af.url == "" {
		af.url, urlFrom = env.Getenv(envURL), "$"+envURL
	}
	if af.url == "" {
		af.url = defaultURL
	}
	if af.dataDir == "" {
		af.dataDir = env.Getenv(envDataDir)
	}
	if af.dataDir == "" {
		af.dataDir = defaultData
	}
	if af.ca == "" && !af.insecure {
		af.ca = env.Getenv(envCA)
	}
	if af.output != "table" && af.output != "json" {
		return usagef("-o %q is not allowed (table or json)", af.output)
	}
	if err := checkBaseURL(urlFrom, af.url); err != nil {
		return err
	}
	return checkPlainHTTP(urlFrom, af.url, af.insecure)
}

// checkPlainHTTP refuses to send the admin token unencrypted to another machine: over
// http:// anyone on the path reads it. A loopback listener never leaves this machine.
func checkPlainHTTP(from, raw string, insecure bool) error {
	u, _ := url.Parse(raw) // checked by checkBaseURL
	if u.Scheme != "http" || insecure || isLoopbackHost(u.Hostname()) {
		return nil
	}
	return usagef("%s %q would send the admin token unencrypted to another machine: use https:// (or --insecure to allow it)", from, raw)
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// checkBaseURL refuses a URL the HTTP client would misread: "127.0.0.1:8443" parses as an
// opaque URL and "localhost:8443" as scheme "localhost", both failing later with an obscure error.
func checkBaseURL(from, raw string) error {
	if !strings.Contains(raw, "://") {
		return usagef("%s %q has no scheme: did you mean https://%s (or http:// for a plain-HTTP listener)?", from, raw, raw)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return usagef("%s %q is not allowed: want http(s)://HOST[:PORT], e.g. %s", from, raw, defaultURL)
	}
	return nil
}

// usageError is a mistake on the command line: exit code 2 rather than 1.
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func exitCode(err error) int {
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}

// parseFlags parses args with fs. When help is asked for (-h, --help) the usage goes to standard
// output and the command ends with 0; other parse errors go to standard error with 2.
func parseFlags(fs *flag.FlagSet, args []string, env Env) (code int, ok bool) {
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	fs.SetOutput(env.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		env.Stdout.Write(buf.Bytes())
		return 0, false
	}
	env.Stderr.Write(buf.Bytes())
	if err != nil {
		return 2, false
	}
	return 0, true
}

// parseInterleaved parses flags that may come before, between or after the positional
// arguments, which it returns.
func parseInterleaved(fs *flag.FlagSet, args []string, env Env) (positional []string, code int, ok bool) {
	for {
		if code, ok := parseFlags(fs, args, env); !ok {
			return nil, code, false
		}
		if fs.NArg() == 0 {
			return positional, 0, true
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func adminMain(args []string, env Env) int {
	if code, done := helpAsked(args, env, adminUsage); done {
		return code
	}
	cmd, rest, err := findCommand(args)
	if err != nil {
		fmt.Fprintf(env.Stderr, "posgate admin: %v\n", err)
		return 2
	}
	if cmd.local != nil {
		return cmd.local(rest, env)
	}
	inv, code, ok := parseInvocation(cmd, rest, env)
	if !ok {
		return code
	}
	if err := inv.run(env); err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", inv.name, err)
		return exitCode(err)
	}
	return 0
}

// invocation is one admin command as given on the command line.
type invocation struct {
	cmd        *command
	name       string // "posgate admin clients create", for messages
	conn       adminFlags
	positional []string
	values     map[string]*string
	bools      map[string]*bool
	set        map[string]bool // flags given explicitly
}

func parseInvocation(cmd *command, args []string, env Env) (*invocation, int, bool) {
	inv := &invocation{cmd: cmd, name: "posgate admin " + strings.Join(cmd.words, " "),
		values: map[string]*string{}, bools: map[string]*bool{}, set: map[string]bool{}}
	fs := flag.NewFlagSet(inv.name, flag.ContinueOnError)
	inv.conn.register(fs)
	for _, f := range cmd.fields() {
		if f.kind == kBool {
			inv.bools[f.flag] = fs.Bool(f.flag, false, f.usage)
		} else {
			inv.values[f.flag] = fs.String(f.flag, "", f.usage)
		}
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s%s [flags]\n  %s\n\nflags (environment variables apply when a flag is not given):\n", inv.name, argsUsage(cmd), cmd.help)
		fs.PrintDefaults()
	}
	positional, code, ok := parseInterleaved(fs, args, env)
	if !ok {
		return nil, code, false
	}
	inv.positional = positional
	fs.Visit(func(f *flag.Flag) { inv.set[f.Name] = true })
	return inv, 0, true
}

// run checks the invocation, calls the admin API and prints the answer.
func (inv *invocation) run(env Env) error {
	if len(inv.positional) != len(inv.cmd.args) {
		return usagef("want %d argument(s)%s, got %d", len(inv.cmd.args), argsUsage(inv.cmd), len(inv.positional))
	}
	if err := inv.conn.resolve(env); err != nil {
		return err
	}
	path, body, err := inv.request(env)
	if err != nil {
		return err
	}
	tok, err := adminToken(inv.conn, env)
	if err != nil {
		return err
	}
	client, err := httpClient(inv.conn)
	if err != nil {
		return err
	}
	var payload []byte
	if inv.cmd.method != "GET" {
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
	}
	status, resp, err := call(client, inv.cmd.method, strings.TrimRight(inv.conn.url, "/")+server.AdminPrefix+path, tok, payload)
	if err != nil {
		return err
	}
	return inv.print(env.Stdout, status, resp)
}

// request builds the path (placeholders filled, query added) and the JSON body.
func (inv *invocation) request(env Env) (string, map[string]any, error) {
	path := inv.cmd.path
	body := map[string]any{}
	for i, a := range inv.cmd.args {
		v := inv.positional[i]
		field, ok := strings.CutPrefix(a, "body:")
		if !ok {
			path = strings.ReplaceAll(path, "{"+a+"}", url.PathEscape(v))
			continue
		}
		v, err := secretArg(env, field, "the "+strings.ToUpper(field)+" argument", v, false)
		if err != nil {
			return "", nil, err
		}
		body[field] = v
	}
	for _, f := range inv.cmd.body {
		if !inv.set[f.flag] {
			if f.required {
				return "", nil, usagef("--%s is required", f.flag)
			}
			continue
		}
		v, err := inv.bodyValue(f, env)
		if err != nil {
			return "", nil, err
		}
		body[f.json] = v
	}
	q := url.Values{}
	for _, f := range inv.cmd.query {
		if !inv.set[f.flag] {
			continue
		}
		v := *inv.values[f.flag]
		if _, err := strconv.Atoi(v); f.kind == kInt && err != nil {
			return "", nil, usagef("--%s %q is not a whole number", f.flag, v)
		}
		q.Set(f.json, v)
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return path, body, nil
}

// bodyValue is the JSON value of a body flag that was given.
func (inv *invocation) bodyValue(f field, env Env) (any, error) {
	if f.kind == kBool {
		return *inv.bools[f.flag], nil
	}
	v := *inv.values[f.flag]
	switch f.kind {
	case kList:
		items := []string{}
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		return items, nil
	case kSecret:
		return secretArg(env, strings.ReplaceAll(f.flag, "-", " "), "--"+f.flag, v, true)
	case kInt:
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, usagef("--%s %q is not a whole number", f.flag, v)
		}
		return n, nil
	}
	return v, nil
}

// print writes a successful answer as a table or JSON; an error answer is reported as an error
// (and, with -o json, also written as it came).
func (inv *invocation) print(out io.Writer, status int, resp []byte) error {
	if status < 200 || status > 299 {
		var e struct {
			Error string `json:"error"`
			Desc  string `json:"error_description"`
		}
		_ = json.Unmarshal(resp, &e)
		if e.Error == "" {
			e.Error, e.Desc = http.StatusText(status), strings.TrimSpace(string(resp))
			if len(e.Desc) > 200 {
				e.Desc = e.Desc[:200]
			}
		}
		if inv.conn.output == "json" {
			out.Write(resp)
		}
		return fmt.Errorf("%d %s: %s", status, e.Error, e.Desc)
	}
	if inv.conn.output == "json" {
		var buf bytes.Buffer
		if json.Indent(&buf, resp, "", "  ") != nil {
			_, err := out.Write(resp)
			return err
		}
		buf.WriteByte('\n')
		_, err := out.Write(buf.Bytes())
		return err
	}
	return printTable(out, resp, inv.cmd)
}

// helpAsked prints a command's usage to standard output when it is given no arguments (a usage
// error: code 2) or a help word (code 0); done says whether it did.
func helpAsked(args []string, env Env, usage func(io.Writer)) (code int, done bool) {
	if len(args) > 0 && args[0] != "help" && args[0] != "-h" && args[0] != "--help" {
		return 0, false
	}
	usage(env.Stdout)
	if len(args) == 0 {
		return 2, true
	}
	return 0, true
}

func orEmpty(r io.Reader) io.Reader {
	if r == nil {
		return strings.NewReader("")
	}
	return r
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// secretArg is a secret given as an admin command's value, which given names in messages: "-"
// reads it from standard input (see readSecret), anything else is the secret itself, used with a
// warning.
func secretArg(env Env, what, given, v string, phrase bool) (string, error) {
	in := secretInput{what: what, from: given, argIs: given, arg: v, safer: `"-" and standard input`, phrase: phrase}
	if v == "-" {
		in.file, in.arg = "-", ""
	}
	return in.get(env)
}

// fields are the command's body and query flags.
func (c *command) fields() []field { return append(append([]field{}, c.body...), c.query...) }

// findCommand finds the command named by the leading words of args (the longest match) and
// returns the arguments after its name. A resource without its verb, or a word that names no
// command, is a usage error listing the words that may come next.
func findCommand(args []string) (*command, []string, error) {
	words := leadingWords(args)
	for n := len(words); n > 0; n-- {
		if c := findCommandNamed(words[:n]); c != nil {
			return c, args[n:], nil
		}
	}
	n := len(words)
	for n > 0 && len(nextWords(words[:n])) == 0 {
		n--
	}
	next := strings.Join(nextWords(words[:n]), "|")
	prefix := strings.Join(words[:n], " ")
	switch {
	case n == 0 && len(words) == 0:
		return nil, nil, usagef("missing resource: %s (see posgate admin help)", next)
	case n == 0:
		return nil, nil, usagef("unknown command %q; resources: %s (see posgate admin help)", words[0], next)
	case n == len(words) && findCommandNamed(append(slices.Clone(words), nextWords(words)[0])) == nil:
		return nil, nil, usagef("%s: missing resource: %s", prefix, next)
	case n == len(words):
		return nil, nil, usagef("%s: missing verb: %s", prefix, next)
	default:
		return nil, nil, usagef("unknown command %q; %s takes: %s", strings.Join(words[:n+1], " "), prefix, next)
	}
}

// findCommandNamed is the command named exactly words, or nil.
func findCommandNamed(words []string) *command {
	for i := range commands {
		if slices.Equal(commands[i].words, words) {
			return &commands[i]
		}
	}
	return nil
}

// nextWords lists, in table order, the words that follow prefix in some command's name.
func nextWords(prefix []string) []string {
	var out []string
	for _, c := range commands {
		if len(c.words) > len(prefix) && slices.Equal(c.words[:len(prefix)], prefix) && !slices.Contains(out, c.words[len(prefix)]) {
			out = append(out, c.words[len(prefix)])
		}
	}
	return out
}

func leadingWords(args []string) []string {
	var out []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			break
		}
		out = append(out, a)
	}
	return out
}

func argsUsage(c *command) string {
	var b strings.Builder
	for _, a := range c.args {
		a = strings.TrimPrefix(a, "body:")
		b.WriteString(" " + strings.ToUpper(a))
	}
	return b.String()
}

// helpWidth is the widest line `posgate admin help` prints: it must read in an 80-100 column
// terminal without wrapping mid-word.
const helpWidth = 100

func adminUsage(out io.Writer) {
	fmt.Fprint(out, wrap("usage: posgate admin <resource> <verb> [ARGS] [flags]", "", helpWidth))
	fmt.Fprint(out, wrap("Every command takes --url, --token-file, --data-dir, --ca, --insecure and -o json|table. A flag that "+
		"is not given is taken from $"+envURL+", $"+envAdminToken+" (else <data-dir>/admin-token), $"+envDataDir+
		" and $"+envCA+", else the defaults "+defaultURL+" and "+defaultData+". The self-signed certificate in the "+
		"data dir is pinned. \"posgate admin <resource> <verb> -h\" lists a command's flags.", "", helpWidth))
	fmt.Fprint(out, wrap("The admin token: --token-file FILE reads it from a file that only its owner may read (mode 600; "+
		"the token alone, optionally followed by a newline). --token TOKEN still works but warns: a command line is "+
		"visible to every user of the machine (ps, /proc/<pid>/cmdline). Other secrets (--password, --auth-secret, "+
		"a TOKEN argument) are read from standard input when given as \"-\", under the same rules (a file redirected "+
		"to it must be private; a pipe is); a value on the command line works but warns.", "", helpWidth))
	group := ""
	for i := range commands {
		c := &commands[i]
		noun := strings.Join(c.words[:len(c.words)-1], " ")
		if noun != group {
			fmt.Fprintf(out, "\n%s\n", noun)
			group = noun
		}
		synopsis := c.words[len(c.words)-1] + argsUsage(c)
		for _, f := range c.fields() {
			s := "--" + f.flag
			if !f.required {
				s = "[" + s + "]"
			}
			synopsis += " " + s
		}
		if c.usage != "" {
			synopsis += " " + c.usage
		}
		fmt.Fprint(out, wrap(synopsis, "  ", helpWidth))
		fmt.Fprint(out, wrap(c.help, "      ", helpWidth))
	}
}

// wrap breaks text into lines of at most width columns (words longer than that stay whole), each
// starting with indent.
func wrap(text, indent string, width int) string {
	var b strings.Builder
	line := indent
	for _, word := range strings.Fields(text) {
		if line != indent && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\n")
	return b.String()
}

// adminToken picks the token (see secretInput): --token (with a warning), else --token-file,
// else $POSGATE_ADMIN_TOKEN, else <data-dir>/admin-token, read like --token-file.
func adminToken(af adminFlags, env Env) (string, error) {
	tok, err := secretInput{what: "admin token", from: "--token-file", file: af.tokenFile, argIs: "--token", arg: af.token,
		env: envAdminToken, safer: "--token-file FILE or $" + envAdminToken}.get(env)
	if tok != "" || err != nil {
		return tok, err
	}
	p := filepath.Join(af.dataDir, server.AdminTokenFile)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no admin token: pass --token-file, set $%s, or point --data-dir (or $%s) at the server's data dir (%v)", envAdminToken, envDataDir, err)
	}
	return readSecret(env, "admin token", "the admin token file", p, false)
}

// httpClient trusts, in order: nothing (--insecure), the --ca file, the self-signed certificate
// in the data dir (pinned by fingerprint), or the system roots.
func httpClient(af adminFlags) (*http.Client, error) {
	tcfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case af.insecure:
		tcfg.InsecureSkipVerify = true
	case af.ca != "":
		pool, err := caPool(af.ca)
		if err != nil {
			return nil, err
		}
		tcfg.RootCAs = pool
	default:
		if fp, err := server.CertFingerprintFile(filepath.Join(af.dataDir, server.CertFile)); err == nil {
			// Pinning: the server must present exactly the certificate it generated into the data
			// dir. Name checks are moot when the one acceptable certificate is named in advance.
			tcfg.InsecureSkipVerify = true
			tcfg.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 || server.Fingerprint(cs.PeerCertificates[0].Raw) != fp {
					return fmt.Errorf("the server's certificate is not the one pinned from %s (use --ca or --insecure)", filepath.Join(af.dataDir, server.CertFile))
				}
				return nil
			}
		}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tcfg, Proxy: http.ProxyFromEnvironment}}, nil
}

// caPool reads the --ca file: the PEM certificates to trust instead of the system roots.
func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca %s: no PEM certificate", file)
	}
	return pool, nil
}

func call(c *http.Client, method, u, tok string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, data, err
}

// printTable prints a list answer as rows of cmd.columns, any other object as key/value lines.
func printTable(out io.Writer, data []byte, cmd *command) error {
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil {
		_, err := out.Write(data)
		return err
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	defer tw.Flush()
	if items, ok := obj[cmd.list].([]any); ok && cmd.list != "" {
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(cmd.columns, "\t")))
		for _, it := range items {
			m, _ := it.(map[string]any)
			row := make([]string, len(cmd.columns))
			for i, c := range cmd.columns {
				row[i] = cell(m[c])
			}
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		return nil
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\n", k, cell(obj[k]))
	}
	return nil
}

func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return "-"
		}
		return strings.NewReplacer("\t", " ", "\n", " ").Replace(x)
	case []any:
		parts := make([]string, len(x))
		for i, p := range x {
			parts[i] = cell(p)
		}
		return strings.Join(parts, ",")
	case map[string]any, []map[string]any:
		b, _ := json.Marshal(x)
		return string(b)
	default:
		return fmt.Sprint(x)
	}
}
