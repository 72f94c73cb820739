package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable posgate reads.
const EnvPrefix = "POSGATE_"

// NonConfigEnv are the POSGATE_ variables that are not configuration keys (documented names):
// they are read elsewhere and never rejected as unknown keys. Variables starting with
// POSGATE_TEST_ are test knobs and are ignored too.
// POSGATE_URL and POSGATE_CA are the admin CLI's; a shell that sets them for `posgate admin` may
// start `posgate serve` too.
var NonConfigEnv = []string{"POSGATE_MASTER_KEY", "POSGATE_ADMIN_TOKEN", "POSGATE_TEST_PG", "POSGATE_URL", "POSGATE_CA"}

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
// derived defaults (store path under the data dir) and validates it. Every error names the key,
// the value and what is allowed.
func Load(o Options) (*Config, error) {
	cfg := Default()
	set := map[string]bool{}
	if o.File != "" {
		data, err := readFile(o.File)
		if err != nil {
			return nil, err
		}
		if err := decodeYAML(cfg, data, set); err != nil {
			return nil, fmt.Errorf("config file %s: %w", o.File, err)
		}
	}
	if err := applyEnv(cfg, o.Environ, set); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(o.Flags))
	for k := range o.Flags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := Set(cfg, k, o.Flags[k]); err != nil {
			return nil, fmt.Errorf("flag for %s: %w", k, err)
		}
		set[k] = true
	}
	// --http-addr alone means "plain HTTP instead of HTTPS": the HTTPS default listener is dropped
	// unless an address for it was asked for explicitly.
	if cfg.Server.HTTPAddr != "" && !set["server.addr"] {
		cfg.Server.Addr = ""
	}
	cfg.Resolve()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
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
	if err := decodeYAML(cfg, data, map[string]bool{}); err != nil {
		return nil, err
	}
	cfg.Resolve()
	if err := cfg.Validate(); err != nil {
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
// types — each error naming the key path and line), then decodes it over cfg with
// KnownFields(true) as a second line of defence. Keys present in the document are added to set.
func decodeYAML(cfg *Config, data []byte, set map[string]bool) error {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file is the defaults
		}
		return fmt.Errorf("not valid YAML: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document (a config file holds exactly one)")
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil
	}
	var problems []error
	checkNode(root, reflect.TypeOf(Config{}), "", set, &problems, 0)
	if len(problems) > 0 {
		return errors.Join(problems...)
	}
	d2 := yaml.NewDecoder(bytes.NewReader(data))
	d2.KnownFields(true)
	if err := d2.Decode(cfg); err != nil {
		return fmt.Errorf("not valid: %w", err)
	}
	return nil
}

// maxDepth bounds the walk (aliases included) so a hostile document cannot recurse forever.
const maxDepth = 16

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

// checkNode verifies that n fits type t at path.
func checkNode(n *yaml.Node, t reflect.Type, path string, set map[string]bool, problems *[]error, depth int) {
	if depth > maxDepth {
		*problems = append(*problems, fmt.Errorf("%s: nested too deeply", displayPath(path)))
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		checkNode(n.Alias, t, path, set, problems, depth+1)
		return
	}
	if path != "" {
		set[path] = true
	}
	isNull := n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
	switch t.Kind() {
	case reflect.Struct:
		if isNull {
			return
		}
		if n.Kind != yaml.MappingNode {
			*problems = append(*problems, fmt.Errorf("%s: line %d: must be a mapping of keys (allowed keys: %s)", displayPath(path), n.Line, strings.Join(yamlKeys(t), ", ")))
			return
		}
		fields := map[string]reflect.StructField{}
		for i := 0; i < t.NumField(); i++ {
			if name := yamlName(t.Field(i)); name != "" {
				fields[name] = t.Field(i)
			}
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
				*problems = append(*problems, fmt.Errorf("%s: line %d: keys must be plain names (merge keys are not supported)", displayPath(path), k.Line))
				continue
			}
			if line, dup := seen[k.Value]; dup {
				*problems = append(*problems, fmt.Errorf("%s: line %d: key %q repeated (first at line %d)", join(path, k.Value), k.Line, k.Value, line))
				continue
			}
			seen[k.Value] = k.Line
			f, ok := fields[k.Value]
			if !ok {
				*problems = append(*problems, fmt.Errorf("%s: line %d: unknown key %q (allowed keys here: %s)", join(path, k.Value), k.Line, k.Value, strings.Join(yamlKeys(t), ", ")))
				continue
			}
			checkNode(v, f.Type, join(path, k.Value), set, problems, depth+1)
		}
	case reflect.Map:
		if isNull {
			return
		}
		if n.Kind != yaml.MappingNode {
			*problems = append(*problems, fmt.Errorf("%s: line %d: must be a mapping of names to values", displayPath(path), n.Line))
			return
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" || k.Value == "" {
				*problems = append(*problems, fmt.Errorf("%s: line %d: keys must be plain non-empty names", displayPath(path), k.Line))
				continue
			}
			if line, dup := seen[k.Value]; dup {
				*problems = append(*problems, fmt.Errorf("%s: line %d: key %q repeated (first at line %d)", join(path, k.Value), k.Line, k.Value, line))
				continue
			}
			seen[k.Value] = k.Line
			checkNode(v, t.Elem(), join(path, k.Value), set, problems, depth+1)
		}
	case reflect.Slice:
		if isNull {
			return
		}
		if n.Kind != yaml.SequenceNode {
			*problems = append(*problems, fmt.Errorf("%s: line %d: must be a list", displayPath(path), n.Line))
			return
		}
		for i, item := range n.Content {
			checkNode(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), set, problems, depth+1)
		}
	default:
		checkScalar(n, t, path, problems)
	}
}

func checkScalar(n *yaml.Node, t reflect.Type, path string, problems *[]error) {
	if n.Kind != yaml.ScalarNode {
		*problems = append(*problems, fmt.Errorf("%s: line %d: must be a single value, not a list or mapping", path, n.Line))
		return
	}
	tag := n.ShortTag()
	if tag == "!!null" {
		*problems = append(*problems, fmt.Errorf("%s: line %d: empty value (give %s, or remove the key to keep the default)", path, n.Line, describeKind(t.Kind())))
		return
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
		*problems = append(*problems, fmt.Errorf("%s: line %d: %s is not %s", path, n.Line, quoteValue(n.Value), describeKind(t.Kind())))
	}
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
