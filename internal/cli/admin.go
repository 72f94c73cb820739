package cli

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/posgate/posgate/internal/server"
)

func w(s string) []string { return strings.Fields(s) }

// adminFlags are common to every admin command.
type adminFlags struct {
	url      string
	token    string
	dataDir  string
	insecure bool
	ca       string
	output   string
}

func adminMain(args []string, env Env) int {
	if code, done := helpAsked(args, env, adminUsage); done {
		return code
	}
	if len(args) >= 2 && args[0] == "gateway" && args[1] == "signing-key" {
		return gatewaySigningKey(args[2:], env)
	}
	cmd, rest := findCommand(args)
	if cmd == nil {
		fmt.Fprintf(env.Stderr, "posgate admin: unknown command %q\n\n", strings.Join(leadingWords(args), " "))
		adminUsage(env.Stderr)
		return 2
	}
	name := "posgate admin " + strings.Join(cmd.words, " ")
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	var af adminFlags
	fs.StringVar(&af.url, "url", "https://127.0.0.1:8443", "base URL of posgate")
	fs.StringVar(&af.token, "token", "", "admin token (default: $POSGATE_ADMIN_TOKEN, else <data-dir>/admin-token)")
	fs.StringVar(&af.dataDir, "data-dir", "./posgate-data", "data dir to read the admin token and the pinned certificate from")
	fs.BoolVar(&af.insecure, "insecure", false, "do not verify the server's TLS certificate")
	fs.StringVar(&af.ca, "ca", "", "PEM file of the CA (or self-signed certificate) to trust")
	fs.StringVar(&af.output, "o", "table", "output: table or json")
	values := map[string]*string{}
	bools := map[string]*bool{}
	for _, f := range append(append([]field{}, cmd.body...), cmd.query...) {
		if f.kind == kBool {
			bools[f.flag] = fs.Bool(f.flag, false, f.usage)
		} else {
			values[f.flag] = fs.String(f.flag, "", f.usage)
		}
	}
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: %s%s [flags]\n  %s\n", name, argsUsage(cmd), cmd.help)
		fs.PrintDefaults()
	}
	// Flags may come before or after positional arguments.
	var positional []string
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(positional) != len(cmd.args) {
		fmt.Fprintf(env.Stderr, "%s: want %d argument(s)%s, got %d\n", name, len(cmd.args), argsUsage(cmd), len(positional))
		return 2
	}
	if af.output != "table" && af.output != "json" {
		fmt.Fprintf(env.Stderr, "%s: -o %q is not allowed (table or json)\n", name, af.output)
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	stdin := bufio.NewReader(orEmpty(env.Stdin))
	path := cmd.path
	body := map[string]any{}
	for i, a := range cmd.args {
		v := positional[i]
		if field, ok := strings.CutPrefix(a, "body:"); ok {
			if v == "-" {
				s, err := readLine(stdin)
				if err != nil {
					fmt.Fprintf(env.Stderr, "%s: reading %s from standard input: %v\n", name, field, err)
					return 1
				}
				v = s
			}
			body[field] = v
			continue
		}
		path = strings.ReplaceAll(path, "{"+a+"}", url.PathEscape(v))
	}
	for _, f := range cmd.body {
		if !set[f.flag] {
			if f.required {
				fmt.Fprintf(env.Stderr, "%s: --%s is required\n", name, f.flag)
				return 2
			}
			continue
		}
		switch f.kind {
		case kBool:
			body[f.json] = *bools[f.flag]
		case kList:
			items := []string{}
			for _, s := range strings.Split(*values[f.flag], ",") {
				if s = strings.TrimSpace(s); s != "" {
					items = append(items, s)
				}
			}
			body[f.json] = items
		case kSecret:
			v := *values[f.flag]
			if v == "-" {
				s, err := readLine(stdin)
				if err != nil {
					fmt.Fprintf(env.Stderr, "%s: reading --%s from standard input: %v\n", name, f.flag, err)
					return 1
				}
				v = s
			}
			body[f.json] = v
		case kInt:
			n, err := strconv.Atoi(*values[f.flag])
			if err != nil {
				fmt.Fprintf(env.Stderr, "%s: --%s %q is not a whole number\n", name, f.flag, *values[f.flag])
				return 2
			}
			body[f.json] = n
		default:
			body[f.json] = *values[f.flag]
		}
	}
	q := url.Values{}
	for _, f := range cmd.query {
		if !set[f.flag] {
			continue
		}
		if _, err := strconv.Atoi(*values[f.flag]); f.kind == kInt && err != nil {
			fmt.Fprintf(env.Stderr, "%s: --%s %q is not a whole number\n", name, f.flag, *values[f.flag])
			return 2
		}
		q.Set(f.json, *values[f.flag])
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}

	tok, err := adminToken(af, env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	client, err := httpClient(af)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	var payload []byte
	if cmd.method != "GET" {
		if payload, err = json.Marshal(body); err != nil {
			fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
			return 1
		}
	}
	status, resp, err := call(client, cmd.method, strings.TrimRight(af.url, "/")+server.AdminPrefix+path, tok, payload)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
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
		if af.output == "json" {
			env.Stdout.Write(resp)
		}
		fmt.Fprintf(env.Stderr, "%s: %d %s: %s\n", name, status, e.Error, e.Desc)
		return 1
	}
	if af.output == "json" {
		var buf bytes.Buffer
		if json.Indent(&buf, resp, "", "  ") == nil {
			buf.WriteByte('\n')
			env.Stdout.Write(buf.Bytes())
		} else {
			env.Stdout.Write(resp)
		}
		return 0
	}
	if err := printTable(env.Stdout, resp, cmd); err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
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

func readLine(r *bufio.Reader) (string, error) {
	s, err := r.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && s != "") {
		return "", err
	}
	return strings.TrimRight(s, "\r\n"), nil
}

// findCommand finds the command whose words start args (the longest match) and returns the
// remaining arguments.
func findCommand(args []string) (*command, []string) {
	var best *command
	for i := range commands {
		c := &commands[i]
		if len(c.words) > len(args) {
			continue
		}
		match := true
		for j, wd := range c.words {
			if args[j] != wd {
				match = false
				break
			}
		}
		if match && (best == nil || len(c.words) > len(best.words)) {
			best = c
		}
	}
	if best == nil {
		return nil, nil
	}
	return best, args[len(best.words):]
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

func adminUsage(out io.Writer) {
	fmt.Fprintln(out, "usage: posgate admin <resource> <verb> [ARGS] [flags]   (flags: --url, --token, --data-dir, --insecure, --ca, -o json|table)")
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	for _, c := range commands {
		var flags []string
		for _, f := range append(append([]field{}, c.body...), c.query...) {
			s := "--" + f.flag
			if !f.required {
				s = "[" + s + "]"
			}
			flags = append(flags, s)
		}
		fmt.Fprintf(tw, "  %s%s %s\t%s\n", strings.Join(c.words, " "), argsUsage(&c), strings.Join(flags, " "), c.help)
	}
	fmt.Fprintf(tw, "  gateway signing-key [--config] [--data-dir]\tprint the key upstreams verify X-Posgate-Signature with (local: reads the data dir)\n")
	tw.Flush()
}

// adminToken picks the token: --token, else $POSGATE_ADMIN_TOKEN, else <data-dir>/admin-token.
func adminToken(af adminFlags, env Env) (string, error) {
	if af.token != "" {
		return af.token, nil
	}
	if t := env.Getenv("POSGATE_ADMIN_TOKEN"); t != "" {
		return t, nil
	}
	p := filepath.Join(af.dataDir, server.AdminTokenFile)
	data, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("no admin token: pass --token, set POSGATE_ADMIN_TOKEN, or point --data-dir at the server's data dir (%v)", err)
	}
	return strings.TrimSpace(string(data)), nil
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
