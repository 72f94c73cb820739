package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Key describes one scalar configuration key: its dotted name, its environment variable and its
// default (as text).
type Key struct {
	Name    string // "chef.leeway"
	Env     string // "POSGATE_CHEF_LEEWAY"
	Kind    string // "int", "string", "bool", "float", "list" (comma-separated in the environment)
	Default string
	Secret  bool // never echoed in error messages
}

// secretKeys hold credentials (a DSN may carry a password): errors about them never show the value.
var secretKeys = map[string]bool{"store.dsn": true, "gateway.signing_secret": true}

// AllKeys lists every scalar key settable by environment and flag, in a stable order. Upstreams are
// settable one by one as POSGATE_UPSTREAMS_<NAME>; routes and per-audience maps only in the file.
func AllKeys() []Key {
	def := reflect.ValueOf(Default()).Elem()
	t := def.Type()
	var out []Key
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if sf.Type.Kind() != reflect.Struct {
			continue
		}
		section := yamlName(sf)
		for j := 0; j < sf.Type.NumField(); j++ {
			f := sf.Type.Field(j)
			kind := scalarKind(f.Type)
			if kind == "" {
				continue
			}
			name := section + "." + yamlName(f)
			out = append(out, Key{
				Name:    name,
				Env:     EnvName(name),
				Kind:    kind,
				Default: formatValue(def.Field(i).Field(j)),
				Secret:  secretKeys[name],
			})
		}
	}
	return out
}

// EnvName is the environment variable of a dotted key: "chef.leeway" → "POSGATE_CHEF_LEEWAY".
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func scalarKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int64:
		return "int"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Float64:
		return "float"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "list"
		}
	}
	return ""
}

func formatValue(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = v.Index(i).String()
		}
		return strings.Join(parts, ",")
	default:
		return fmt.Sprint(v.Interface())
	}
}

// field finds the settable field of cfg for a dotted scalar key.
func field(cfg *Config, key string) (reflect.Value, bool) {
	section, name, ok := strings.Cut(key, ".")
	if !ok {
		return reflect.Value{}, false
	}
	v := reflect.ValueOf(cfg).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if yamlName(t.Field(i)) != section || t.Field(i).Type.Kind() != reflect.Struct {
			continue
		}
		sv := v.Field(i)
		st := sv.Type()
		for j := 0; j < st.NumField(); j++ {
			if yamlName(st.Field(j)) == name && scalarKind(st.Field(j).Type) != "" {
				return sv.Field(j), true
			}
		}
	}
	return reflect.Value{}, false
}

// Set sets a scalar key ("chef.leeway") or one upstream ("upstreams.pos") from text, as the
// environment and flags give it. Numbers are decimal; lists are comma-separated.
func Set(cfg *Config, key, value string) error {
	if name, ok := strings.CutPrefix(key, "upstreams."); ok {
		if name == "" {
			return fmt.Errorf("%s: an upstream needs a name", key)
		}
		if cfg.Upstreams == nil {
			cfg.Upstreams = map[string]string{}
		}
		cfg.Upstreams[name] = value
		return nil
	}
	f, ok := field(cfg, key)
	if !ok {
		return fmt.Errorf("unknown key %q", key)
	}
	shown := quoteValue(value)
	if secretKeys[key] {
		shown = "(value hidden)"
	}
	switch f.Kind() {
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil || f.OverflowInt(n) {
			return fmt.Errorf("%s: %s is not a whole number", key, shown)
		}
		f.SetInt(n)
	case reflect.Float64:
		x, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return fmt.Errorf("%s: %s is not a number", key, shown)
		}
		f.SetFloat(x)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(value))
		if err != nil {
			return fmt.Errorf("%s: %s is not true or false", key, shown)
		}
		f.SetBool(b)
	case reflect.String:
		f.SetString(value)
	case reflect.Slice:
		var items []string
		for _, s := range strings.Split(value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		f.Set(reflect.ValueOf(items))
	}
	return nil
}

// applyEnv applies POSGATE_<SECTION>_<KEY> variables. A POSGATE_ variable that is neither a key,
// an upstream, a documented non-config variable nor a POSGATE_TEST_ knob is an error: a typo must
// not silently leave the default in place.
func applyEnv(cfg *Config, environ []string, src sources, p *problems) {
	byEnv := map[string]string{}
	for _, k := range AllKeys() {
		byEnv[k.Env] = k.Name
	}
	var names []string
	values := map[string]string{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		if _, dup := values[name]; !dup {
			names = append(names, name)
		}
		values[name] = value
	}
	sort.Strings(names)
	for _, name := range names {
		value := values[name]
		if isNonConfigEnv(name) {
			continue
		}
		if up, ok := strings.CutPrefix(name, EnvPrefix+"UPSTREAMS_"); ok && up != "" {
			byEnv[name] = "upstreams." + strings.ToLower(up)
		}
		where := "environment " + name
		key, ok := byEnv[name]
		if !ok {
			*p = append(*p, Problem{Where: where, Route: -1,
				Msg: "not a posgate setting (settings are POSGATE_<SECTION>_<KEY>, e.g. POSGATE_STORE_DRIVER; see docs/configuration.md)"})
			continue
		}
		if err := Set(cfg, key, value); err != nil {
			*p = append(*p, Problem{Where: where, Msg: err.Error(), Route: -1})
			continue
		}
		src[key] = source{where: where}
	}
}

func isNonConfigEnv(name string) bool {
	if strings.HasPrefix(name, EnvPrefix+"TEST_") {
		return true
	}
	for _, n := range NonConfigEnv {
		if n == name {
			return true
		}
	}
	return false
}
