package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable posgate reads.
const EnvPrefix = "POSGATE_"

// NonConfigEnv are the POSGATE_ variables that are not configuration keys (documented names):
// they are read elsewhere and never rejected as unknown keys. Variables starting with
// POSGATE_TEST_ are test knobs and are ignored too. Besides the server's own, they are the
// variables the command line reads (the admin CLI's connection, the secrets of `posgate token`
// and `posgate simulate`): a shell that sets them may start `posgate serve` too.
var NonConfigEnv = []string{"POSGATE_MASTER_KEY", "POSGATE_ADMIN_TOKEN", "POSGATE_TEST_PG",
	"POSGATE_URL", "POSGATE_CA", "POSGATE_CLIENT_SECRET", "POSGATE_PASSWORD",
	"POSGATE_JACKPOT_API_KEY", "POSGATE_JACKPOT_API_SIGNATURE", "POSGATE_DOSHII_LOCATION_TOKEN",
	"POSGATE_DOSHII_VENDOR_KEY", "POSGATE_ORDERPAY_AUTH_SECRET"}

// MaxFileBytes caps the config file: a config is a few kilobytes; anything bigger is a mistake.
const MaxFileBytes = 1 << 20

// Options say where configuration comes from. Later sources override earlier ones: defaults, then
// File, then Environ (POSGATE_<SECTION>_<KEY>), then Flags.
type Options struct {
	File    string            // YAML file; "" = none
	Environ []string          // "KEY=value" pairs, usually os.Environ(); nil = none
	Flags   map[string]string // key ("server.addr") → value, from command-line flags
}

// Load builds the configuration from defaults, the file, the environment and flags, fills in the
// derived defaults (store path under the data dir) and validates it. Every problem is reported at
// once, in an *Error: each names the key, where its value came from (the file's line, the
// environment variable or the flag), the value and what is allowed.
func Load(o Options) (*Config, error) {
	cfg := Default()
	src := sources{}
	var p problems
	parsed := true
	if o.File != "" {
		data, err := readFile(o.File)
		if err != nil {
			return nil, err
		}
		parsed = decodeYAML(cfg, data, o.File, src, &p)
	}
	applyEnv(cfg, o.Environ, src, &p)
	keys := make([]string, 0, len(o.Flags))
	for k := range o.Flags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := Set(cfg, k, o.Flags[k]); err != nil {
			p = append(p, Problem{Where: "flag", Msg: err.Error(), Route: -1})
			continue
		}
		src[k] = source{where: "flag"}
	}
	// --http-addr alone means "plain HTTP instead of HTTPS": the HTTPS default listener is dropped
	// unless an address for it was asked for explicitly.
	if _, addrSet := src["server.addr"]; cfg.Server.HTTPAddr != "" && !addrSet {
		cfg.Server.Addr = ""
	}
	cfg.Resolve()
	if parsed {
		p = append(p, validationProblems(cfg, src)...)
	}
	if err := p.sorted().err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// validationProblems are Validate's problems, each located where its value came from.
func validationProblems(cfg *Config, src sources) []Problem {
	var e *Error
	if err := cfg.Validate(); !errors.As(err, &e) {
		return nil
	}
	src.locate(e.Problems)
	return e.Problems
}

// sorted puts the file's problems first, in line order, then the others as found.
func (p problems) sorted() problems {
	slices.SortStableFunc(p, func(a, b Problem) int {
		switch {
		case a.line == 0 && b.line == 0:
			return 0
		case a.line == 0:
			return 1
		case b.line == 0:
			return -1
		}
		return a.line - b.line
	})
	return p
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("config file %s: larger than %d bytes", path, MaxFileBytes)
	}
	return data, nil
}

// Parse decodes a YAML document over the defaults and validates the result (no environment, no
// flags). It is what the fuzz target exercises.
func Parse(data []byte) (*Config, error) {
	cfg := Default()
	src := sources{}
	var p problems
	if decodeYAML(cfg, data, "", src, &p) {
		cfg.Resolve()
		p = append(p, validationProblems(cfg, src)...)
	}
	if err := p.sorted().err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Resolve fills the defaults that derive from other keys: the SQLite file lives in the data dir.
// (The token issuer, when unset, is derived by the server from the address it actually listens on.)
func (c *Config) Resolve() {
	if c.Store.Driver == "sqlite" && c.Store.Path == "" {
		c.Store.Path = filepath.Join(c.Server.DataDir, "posgate.db")
	}
}

// decodeYAML checks the document's shape against Config (unknown keys, duplicate keys, scalar
// types — each problem naming the key path and line) and decodes it over cfg, leaving out what
// is wrong so the rest can still be validated. Keys present in the document are recorded in src.
// It reports false when the document cannot be read at all (not YAML, several documents).
func decodeYAML(cfg *Config, data []byte, file string, src sources, p *problems) bool {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return true // an empty file is the defaults
		}
		line, msg := syntaxError(data, err)
		p.at(file, line, "", "not valid YAML: %s", msg)
		return false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		p.at(file, max(extra.Line, 1), "", "more than one YAML document (a config file holds exactly one)")
		return false
	}
	if len(doc.Content) == 0 {
		return true
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return true
	}
	w := walker{file: file, src: src, p: p}
	before := len(*p)
	if !w.check(root, reflect.TypeOf(Config{}), "", 0) {
		return false
	}
	if len(*p) == before {
		// A clean document: decode the text itself, with unknown fields refused as a second line
		// of defence.
		d2 := yaml.NewDecoder(bytes.NewReader(data))
		d2.KnownFields(true)
		if err := d2.Decode(cfg); err != nil {
			p.at(file, 1, "", "not valid: %v", err)
			return false
		}
		return true
	}
	// What is left once the problems were cut out still gets validated.
	if err := root.Decode(cfg); err != nil {
		p.at(file, 1, "", "not valid: %v", err)
		return false
	}
	return true
}

// syntaxError finds the line of a YAML syntax error. The parser names the line where the
// enclosing block starts (line 1 for a mis-indented key in a top-level mapping), so the line is
// found again as the shortest prefix of the document that fails with the same message.
func syntaxError(data []byte, err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	reported := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, m, ok := strings.Cut(rest, ": "); ok {
			if v, err := strconv.Atoi(n); err == nil {
				reported, msg = v, m
			}
		}
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	failsAlike := func(n int) bool {
		var node yaml.Node
		err := yaml.NewDecoder(bytes.NewReader(bytes.Join(lines[:n], nil))).Decode(&node)
		return err != nil && !errors.Is(err, io.EOF) && strings.HasSuffix(err.Error(), ": "+msg)
	}
	lo, hi := 0, len(lines) // lo does not fail alike (the empty prefix), hi does (the document)
	if !failsAlike(hi) {
		return max(reported, 1), msg
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if failsAlike(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	if reported > 0 && reported < hi {
		msg += fmt.Sprintf(" (check the indentation against line %d)", reported)
	}
	return hi, msg
}

// maxDepth bounds the walk (aliases included) so a hostile document cannot recurse forever.
const maxDepth = 16

// maxAliasValues bounds the values reached through aliases: each alias is walked again where it
// is used, so a small document that repeats a big anchored block many times would otherwise cost
// time and memory in the product of the two (a config needs a handful of reused blocks at most).
const maxAliasValues = 10000

func yamlKeys(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if tag := yamlName(t.Field(i)); tag != "" {
			out = append(out, tag)
		}
	}
	return out
}

func yamlName(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	if i := strings.IndexByte(tag, ','); i >= 0 {
		tag = tag[:i]
	}
	if tag == "-" {
		return ""
	}
	return tag
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func displayPath(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

// walker checks a document against Config, records where each key was set and cuts out what is
// wrong (a bad key and its value, a list with a bad item), so the rest can be decoded.
type walker struct {
	file string
	src  sources
	p    *problems

	inAlias   int  // >0 while walking an alias's target
	aliased   int  // values walked through aliases so far
	exhausted bool // maxAliasValues was passed (reported once)
}

func (w *walker) fail(n *yaml.Node, path, format string, args ...any) bool {
	w.p.at(w.file, n.Line, displayPath(path), format, args...)
	return false
}

// check verifies that n fits type t at path; false means the parent must drop n.
func (w *walker) check(n *yaml.Node, t reflect.Type, path string, depth int) bool {
	if depth > maxDepth {
		return w.fail(n, path, "nested too deeply")
	}
	if w.inAlias > 0 {
		if w.aliased++; w.aliased > maxAliasValues {
			if !w.exhausted {
				w.exhausted = true
				w.fail(n, path, "aliases expand to more than %d values", maxAliasValues)
			}
			return false
		}
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return true
		}
		w.inAlias++
		defer func() { w.inAlias-- }()
		return w.check(n.Alias, t, path, depth+1)
	}
	if path != "" {
		w.src[path] = source{where: lineOf(w.file, n.Line), line: n.Line}
	}
	isNull := n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
	switch t.Kind() {
	case reflect.Struct:
		if isNull {
			return true
		}
		if n.Kind != yaml.MappingNode {
			return w.fail(n, path, "must be a mapping of keys (allowed keys: %s)", strings.Join(yamlKeys(t), ", "))
		}
		fields := map[string]reflect.StructField{}
		for i := 0; i < t.NumField(); i++ {
			if name := yamlName(t.Field(i)); name != "" {
				fields[name] = t.Field(i)
			}
		}
		w.mapping(n, path, depth, func(k *yaml.Node) (reflect.Type, bool) {
			f, ok := fields[k.Value]
			if !ok {
				w.fail(k, join(path, k.Value), "unknown key %q (allowed keys here: %s)", k.Value, strings.Join(yamlKeys(t), ", "))
			}
			return f.Type, ok
		})
	case reflect.Map:
		if isNull {
			return true
		}
		if n.Kind != yaml.MappingNode {
			return w.fail(n, path, "must be a mapping of names to values")
		}
		w.mapping(n, path, depth, func(k *yaml.Node) (reflect.Type, bool) {
			if k.Value == "" {
				return nil, w.fail(k, path, "keys must be plain non-empty names")
			}
			return t.Elem(), true
		})
	case reflect.Slice:
		if isNull {
			return true
		}
		if n.Kind != yaml.SequenceNode {
			return w.fail(n, path, "must be a list")
		}
		ok := true
		for i, item := range n.Content {
			ok = w.check(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1) && ok
		}
		return ok // a list with a bad item is dropped whole: indexes in later messages stay true
	default:
		return w.scalar(n, t, path)
	}
	return true
}

// mapping checks a mapping's pairs: keys must be plain and unique, and elem says whether a key is
// allowed and the type of its value. Pairs with a problem are cut out of n.
func (w *walker) mapping(n *yaml.Node, path string, depth int, elem func(k *yaml.Node) (reflect.Type, bool)) {
	seen := map[string]int{}
	kept := n.Content[:0:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge":
			w.fail(k, path, "keys must be plain names (merge keys are not supported)")
			continue
		case seen[k.Value] > 0:
			w.fail(k, join(path, k.Value), "key %q repeated (first at line %d)", k.Value, seen[k.Value])
			continue
		}
		seen[k.Value] = k.Line
		t, ok := elem(k)
		if !ok || !w.check(v, t, join(path, k.Value), depth+1) {
			continue
		}
		kept = append(kept, k, v)
	}
	n.Content = kept
}

func (w *walker) scalar(n *yaml.Node, t reflect.Type, path string) bool {
	if n.Kind != yaml.ScalarNode {
		return w.fail(n, path, "must be a single value, not a list or mapping")
	}
	tag := n.ShortTag()
	if tag == "!!null" {
		return w.fail(n, path, "empty value (give %s, or remove the key to keep the default)", describeKind(t.Kind()))
	}
	ok := true
	switch t.Kind() {
	case reflect.Int, reflect.Int64:
		if tag != "!!int" {
			ok = false
		} else if _, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64); err != nil {
			ok = false
		}
	case reflect.Float64:
		ok = tag == "!!int" || tag == "!!float"
	case reflect.Bool:
		ok = tag == "!!bool"
	case reflect.String:
		ok = tag == "!!str" || tag == "!!int" || tag == "!!float" || tag == "!!bool"
	}
	if !ok {
		return w.fail(n, path, "%s is not %s", quoteValue(n.Value), describeKind(t.Kind()))
	}
	return true
}

func describeKind(k reflect.Kind) string {
	switch k {
	case reflect.Int, reflect.Int64:
		return "a whole number"
	case reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	default:
		return "a string"
	}
}

// quoteValue shows a user's value in an error, shortened so a pasted blob does not flood the log.
func quoteValue(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}
