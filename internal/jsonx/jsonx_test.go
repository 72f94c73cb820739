package jsonx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode"
)

func TestCheckObject(t *testing.T) {
	cases := []struct {
		in      string
		wantErr string // "" = valid; else a substring of the error
	}{
		{`{}`, ""},
		{` {"a":1,"b":[1,{"c":2}],"d":{"e":null}} `, ""},
		{`{"a":1,"a":2}`, `duplicate key "a"`},
		{`{"alg":"HS256","ALG":"none"}`, `duplicate key "ALG"`},
		{`{"a":{"b":1,"b":2}}`, "duplicate key"},
		{`{"a":[{"b":1,"b":2}]}`, "duplicate key"},
		{`{"a":{"b":1},"b":2}`, ""}, // same key at different depths is fine
		{`{"a":{"b":1},"c":{"b":2}}`, ""},
		{`{"a":1,"\u0061":2}`, `duplicate key "a"`}, // compared after unescaping
		{`{"a\/b":1,"a/b":2}`, "duplicate key"},
		{`{"\ud83d\ude00":1,"😀":2}`, "duplicate key"},
		{`{"\ud800":1,"\udc00":2}`, "duplicate key"},      // lone surrogates both decode to U+FFFD
		{"{\"\xff\":1,\"\xfe\":2}", "duplicate key"},      // invalid UTF-8 decodes to U+FFFD
		{"{\"\xff\":1,\"\\ufffd\":2}", "duplicate key"},   // …the same U+FFFD as the escape
		{`{"k":1,"` + "\u212a" + `":2}`, "duplicate key"}, // Kelvin sign: encoding/json matches it to "K"
		{`{"s":1,"` + "\u017f" + `":2}`, "duplicate key"}, // long s: encoding/json matches it to "S"
		{`{"σ":1,"ς":2}`, "duplicate key"},
		{`{"i":1,"` + "\u0130" + `":2}`, "duplicate key"}, // İ lowercases to i
		{`{"é":1,"É":2}`, "duplicate key"},
		{`{"ß":1,"ss":2}`, ""}, // no full case folding, in encoding/json either
		{`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"s":19}`, ""},
		{`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"A":19}`, `duplicate key "A"`},
		{`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"R":19}`, `duplicate key "R"`},
		{`{"n":[-0,0.5,1e9,-1.25E-7,true,false,null,"x\n\"\\"]}`, ""},
		{`[]`, "not a JSON object"},
		{`"x"`, "not a JSON object"},
		{`1x`, "not a JSON object"},
		{`{"a":1}{}`, "data after the object"},
		{`{"a":1} 2`, "data after the object"},
		{`{"a":1}x`, "invalid character 'x'"},
		{`{"a":1`, "invalid JSON"},
		{`{"a":}`, "invalid JSON"},
		{`{"a":01}`, "invalid JSON"},
		{`{"a":1.}`, "invalid JSON"},
		{`{"a":"\x"}`, "invalid JSON"},
		{"{\"a\":\"\x01\"}", "invalid JSON"},
		{`{"a":1,}`, "invalid JSON"},
		{`{"a":1,"a"`, "duplicate key"}, // found before the syntax error, as a streaming decoder finds it
		{``, "invalid JSON"},
		{" \t\r\n", "invalid JSON"},
		{strings.Repeat(`{"a":`, 32) + "1" + strings.Repeat(`}`, 32), ""},
		{strings.Repeat(`{"a":`, 33) + "1" + strings.Repeat(`}`, 33), "nested too deeply"},
		{strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat(`}`, 40), "nested too deeply"},
		{`{"a":` + strings.Repeat(`[`, 31) + strings.Repeat(`]`, 31) + `}`, ""},
		{`{"a":` + strings.Repeat(`[`, 32) + strings.Repeat(`]`, 32) + `}`, "nested too deeply"},
		{`{"a":` + strings.Repeat(`[`, 40) + strings.Repeat(`]`, 40) + `}`, "nested too deeply"},
		{`{"a":` + strings.Repeat(`[`, 40), "nested too deeply"}, // found before the truncation
	}
	for _, c := range cases {
		err := CheckObject([]byte(c.in))
		if c.wantErr == "" {
			if err != nil {
				t.Errorf("CheckObject(%q) = %v, want nil", c.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("CheckObject(%q) = %v, want error containing %q", c.in, err, c.wantErr)
		}
	}
	if err := CheckObject([]byte(`{"a":1,"a":2}`)); !errors.Is(err, ErrDuplicateKey) {
		t.Errorf("duplicate key error does not wrap ErrDuplicateKey: %v", err)
	}
	if err := CheckObject([]byte(`[1]`)); !errors.Is(err, ErrNotObject) {
		t.Errorf("not-an-object error is not ErrNotObject: %v", err)
	}
}

// TestCheckObjectMessages pins the messages callers show: the fast path must word them exactly as
// the decoder does.
func TestCheckObjectMessages(t *testing.T) {
	for in, want := range map[string]string{
		`{"method":1,"method":2}`:         `duplicate key "method"`,
		`{"x":{"\u0041":1,"a":2}}`:        `duplicate key "a"`,
		"{\"\xff\":1,\"\xfe\":2}":         "duplicate key \"\ufffd\"",
		strings.Repeat(`{"a":`, 33) + "1": `invalid JSON: nested too deeply`,
		`{"a":1} x`:                       `invalid JSON: invalid character 'x' looking for beginning of value`,
		`{"a":1}{}`:                       `invalid JSON: data after the object`,
		`{"a" 1}`:                         `invalid JSON: invalid character '1' after object key`,
		`x`:                               `invalid JSON: invalid character 'x' looking for beginning of value`,
		`{"a":[1,]}`:                      `invalid JSON: invalid character ']' looking for beginning of value`,
		`null`:                            `not a JSON object`,
		`{"k":1,"` + "\u212a" + `":2}`:    `duplicate key "` + "\u212a" + `"`,
	} {
		err := CheckObject([]byte(in))
		if err == nil || err.Error() != want {
			t.Errorf("CheckObject(%q) = %v, want %q", in, err, want)
		}
	}
}

// TestFoldKeyCoversEncodingJSONAndToLower proves, for every rune, that FoldKey's classes are closed
// under unicode.SimpleFold (encoding/json's field matching) and under unicode.ToLower (the
// plain strings.ToLower comparison): keys either of them would confuse are always duplicates.
func TestFoldKeyCoversEncodingJSONAndToLower(t *testing.T) {
	fold := func(r rune) rune { return []rune(FoldKey(string(r)))[0] }
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if r >= 0xD800 && r < 0xE000 { // surrogates are not runes of a Go string
			continue
		}
		f := fold(r)
		if g := fold(unicode.SimpleFold(r)); g != f {
			t.Fatalf("%U folds to %U but its case-folding partner %U folds to %U", r, f, unicode.SimpleFold(r), g)
		}
		if g := fold(unicode.ToLower(r)); g != f {
			t.Fatalf("%U folds to %U but its lower case %U folds to %U", r, f, unicode.ToLower(r), g)
		}
	}
}

// TestEncodingJSONMatchesFoldedKeys shows why the folding matters: encoding/json fills the same
// struct field from keys that strings.ToLower keeps apart.
func TestEncodingJSONMatchesFoldedKeys(t *testing.T) {
	var v struct {
		K string `json:"k"`
		S string `json:"s"`
	}
	if err := json.Unmarshal([]byte(`{"`+"\u212a"+`":"kelvin","`+"\u017f"+`":"long s"}`), &v); err != nil {
		t.Fatal(err)
	}
	if v.K != "kelvin" || v.S != "long s" {
		t.Fatalf("encoding/json no longer folds these keys (%+v): revisit FoldKey's documentation", v)
	}
	for _, in := range []string{`{"k":"a","` + "\u212a" + `":"b"}`, `{"s":"a","` + "\u017f" + `":"b"}`} {
		if err := Decode([]byte(in), &v, true); !errors.Is(err, ErrDuplicateKey) {
			t.Errorf("Decode(%q) = %v, want a duplicate key", in, err)
		}
	}
}

// TestCheckObjectManyKeys covers objects beyond the linear-comparison size, nested in each other.
func TestCheckObjectManyKeys(t *testing.T) {
	obj := func(n int, inner string, extra string) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			fmt.Fprintf(&b, `"key%d":%d,`, i, i)
		}
		b.WriteString(`"inner":` + inner + extra + "}")
		return b.String()
	}
	ok := obj(100, obj(40, "{}", ""), "")
	if err := CheckObject([]byte(ok)); err != nil {
		t.Fatalf("CheckObject(many keys) = %v", err)
	}
	for _, in := range []string{
		obj(100, obj(40, "{}", ""), `,"KEY99":1`),
		obj(100, obj(40, "{}", `,"Key3":1`), ""),
		obj(3, obj(40, "{}", `,"Key39":1`), ""),
		obj(30, obj(3, "{}", ""), `,"inner":1`),
	} {
		if err := CheckObject([]byte(in)); !errors.Is(err, ErrDuplicateKey) {
			t.Errorf("CheckObject(%.60q…) = %v, want a duplicate key", in, err)
		}
	}
}

func TestCheckObjectAllocations(t *testing.T) {
	for name, in := range map[string][]byte{"claims": claimsJSON, "body": bodyJSON, "header": headerJSON} {
		if n := testing.AllocsPerRun(100, func() { _ = CheckObject(in) }); n != 0 {
			t.Errorf("%s: %v allocations per CheckObject, want 0", name, n)
		}
	}
}

func TestDecode(t *testing.T) {
	var v struct {
		A string `json:"a"`
	}
	if err := Decode([]byte(`{"a":"x"}`), &v, true); err != nil || v.A != "x" {
		t.Fatalf("Decode = %v, %+v", err, v)
	}
	if err := Decode([]byte(`{"a":"x","b":1}`), &v, true); err == nil {
		t.Fatal("unknown field accepted with disallowUnknown")
	}
	if err := Decode([]byte(`{"a":"x","b":1}`), &v, false); err != nil {
		t.Fatalf("unknown field refused without disallowUnknown: %v", err)
	}
	if err := Decode([]byte(`{"a":"x","A":"y"}`), &v, false); err == nil {
		t.Fatal("case-folded duplicate accepted")
	}
}

// referenceCheckObject is a plain encoding/json implementation of CheckObject, the reference
// the single-pass scanner is compared with. The key comparison is a parameter: fold is
// strings.ToLower for a naive lower-casing comparison, FoldKey for CheckObject's.
func referenceCheckObject(data []byte, fold func(string) string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return ErrNotObject
	}
	if err := refObject(dec, 1, fold); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			return errors.New("invalid JSON: data after the object")
		}
		return fmt.Errorf("invalid JSON: %w", err)
	}
	return nil
}

func refObject(dec *json.Decoder, depth int, fold func(string) string) error {
	if depth > MaxDepth {
		return errors.New("invalid JSON: nested too deeply")
	}
	seen := map[string]struct{}{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("invalid JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return errors.New("invalid JSON: object key is not a string")
		}
		folded := fold(key)
		if _, dup := seen[folded]; dup {
			return fmt.Errorf("%w %q", ErrDuplicateKey, key)
		}
		seen[folded] = struct{}{}
		if err := refValue(dec, depth, fold); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return fmt.Errorf("invalid JSON: %w", err)
	}
	return nil
}

func refValue(dec *json.Decoder, depth int, fold func(string) string) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '{':
		return refObject(dec, depth+1, fold)
	case '[':
		if depth+1 > MaxDepth {
			return errors.New("invalid JSON: nested too deeply")
		}
		for dec.More() {
			if err := refValue(dec, depth+1, fold); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // ']'
			return fmt.Errorf("invalid JSON: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("invalid JSON: unexpected %q", d)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// checkDifferential is the property FuzzCheckObjectDifferential checks on every input:
//   - CheckObject answers exactly as the reference decoder with FoldKey: same verdict, same error
//     message, same error class;
//   - the one-pass scan alone (before any fallback) answers the same whenever it answers, and
//     never hands a well-formed object to the slow decoder;
//   - compared with the original (strings.ToLower) behaviour, CheckObject only ever refuses more,
//     and only by finding more duplicate keys.
func checkDifferential(t *testing.T, data []byte) {
	t.Helper()
	got := CheckObject(data)
	want := referenceCheckObject(data, FoldKey)
	if errString(got) != errString(want) {
		t.Fatalf("CheckObject(%q) = %v, reference = %v", data, got, want)
	}
	if errors.Is(got, ErrDuplicateKey) != errors.Is(want, ErrDuplicateKey) || errors.Is(got, ErrNotObject) != errors.Is(want, ErrNotObject) {
		t.Fatalf("CheckObject(%q) = %v, reference = %v: different error class", data, got, want)
	}
	switch fast := scan(data); {
	case fast == errSyntax:
		if json.Valid(data) && want == nil {
			t.Fatalf("scan(%q) took the slow path for a valid object", data)
		}
	case errString(fast) != errString(want):
		t.Fatalf("scan(%q) = %v, reference = %v", data, fast, want)
	}
	old := referenceCheckObject(data, strings.ToLower)
	switch {
	case old != nil && got == nil:
		t.Fatalf("CheckObject(%q) accepts what the original refused: %v", data, old)
	case old == nil && got != nil && !errors.Is(got, ErrDuplicateKey):
		t.Fatalf("CheckObject(%q) = %v, the original accepted it", data, got)
	case old != nil && got != nil && errString(old) != errString(got) && !errors.Is(got, ErrDuplicateKey):
		t.Fatalf("CheckObject(%q) = %v, the original said %v", data, got, old)
	}
	if got == nil {
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil || m == nil {
			t.Fatalf("CheckObject accepted %q but encoding/json does not decode it as an object: %v", data, err)
		}
	}
}

var differentialSeeds = []string{
	`{}`, ` {} `, "\t{\n}\r\n", `{"a":1,"a":2}`, `{"a":[1,{"b":null}]}`, `[`, `{"a":"\u0041"}`, `{"é":1,"É":2}`,
	`{"a":1,"\u0061":2}`, `{"\u0041":1,"a":2}`, `{"a\/":1,"a/":2}`, `{"\"":1,"\u0022":2}`,
	`{"k":1,"` + "\u212a" + `":2}`, `{"K":1,"\u212a":2}`, `{"s":1,"` + "\u017f" + `":2}`, `{"S":1,"\u017F":2}`,
	`{"i":1,"` + "\u0130" + `":2}`, `{"I":1,"\u0131":2}`, `{"σ":1,"ς":2,"Σ":3}`, `{"µ":1,"μ":2}`, `{"ǅ":1,"ǆ":2}`,
	`{"ß":1,"ẞ":2}`, `{"ß":1,"SS":2}`, `{"\u0345":1,"ι":2}`,
	`{"\ud83d\ude00":1,"😀":2}`, `{"\ud800":1,"\udc00":2}`, `{"\ud800\u0041":1,"\ufffdA":2}`, `{"\ud800\ud800":1}`,
	"{\"\xff\":1,\"\xfe\":2}", "{\"\xed\xa0\x80\":1,\"\\ufffd\\ufffd\\ufffd\":2}", "{\"a\xc3\":1}", "{\"x\":\"\xff\"}",
	`{"a":-0,"b":0.5,"c":1e9,"d":-1.25E-7,"e":1E+2,"f":123456789012345678901234567890}`,
	`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":-}`, `{"a":+1}`, `{"a":1x}`, `{"a":0x1}`, `{"a":1e999}`,
	`{"a":true,"b":false,"c":null}`, `{"a":tru}`, `{"a":nul}`, `{"a":truex}`, `{"a":True}`,
	`{"a":"\b\f\n\r\t\\\/\""}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12g4"}`, "{\"a\":\"\x1f\"}", "{\"a\":\"\x7f\"}",
	`{"a":1,}`, `{"a":1,,"b":2}`, `{,}`, `{"a"}`, `{"a" 1}`, `{"a":1 "b":2}`, `{1:2}`, `{"a":1]`, `{"a":[1}`, `{"a":[1,]}`,
	`{"a":1}{}`, `{"a":1} 2`, `{"a":1}x`, `{"a":1}"`, `{"a":1}]`, `{"a":1,"a"`, `{"a":1,"a":`, `{"a":1,"A"x`,
	``, ` `, `x`, `"x"`, `1`, `1x`, `-`, `[]`, `[1,2`, `null`, `truex`, `"abc`, "\xef\xbb\xbf{}",
	strings.Repeat(`{"a":`, 32) + "1" + strings.Repeat(`}`, 32),
	strings.Repeat(`{"a":`, 33) + "1" + strings.Repeat(`}`, 33),
	`{"a":` + strings.Repeat(`[`, 31) + strings.Repeat(`]`, 31) + `}`,
	`{"a":` + strings.Repeat(`[`, 32) + strings.Repeat(`]`, 32) + `}`,
	`{"a":` + strings.Repeat(`[`, 40) + "x",
	`{"a":1,"a":` + strings.Repeat(`[`, 40),
	`{"a":` + strings.Repeat(`[{"b":1,"B":2},`, 3) + `1]}`,
	`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"\u212a":19}`,
	`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"A":1},"r":18}`,
}

func TestCheckObjectDifferentialSeeds(t *testing.T) {
	for _, s := range differentialSeeds {
		checkDifferential(t, []byte(s))
	}
	for _, s := range [][]byte{claimsJSON, bodyJSON, headerJSON} {
		checkDifferential(t, s)
	}
}

func FuzzCheckObjectDifferential(f *testing.F) {
	for _, s := range differentialSeeds {
		f.Add([]byte(s))
	}
	f.Add(claimsJSON)
	f.Add(bodyJSON)
	f.Add(headerJSON)
	f.Fuzz(checkDifferential)
}

func FuzzCheckObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"a":2}`, `{"a":[1,{"b":null}]}`, `[`, `{"a":"\u0041"}`, `{"é":1,"É":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := CheckObject(data)
		if err == nil {
			// Whatever CheckObject accepts, encoding/json must decode as an object.
			var m map[string]any
			if uerr := Decode(data, &m, false); uerr != nil {
				t.Fatalf("CheckObject accepted %q but Decode failed: %v", data, uerr)
			}
		}
	})
}

// Typical inputs: the claims of a posgate access token, its JOSE header, and an OAuth token
// request body.
var (
	claimsJSON = []byte(`{"iss":"https://posgate.example.com","sub":"cl_7K2M9QXRT4VBN8HD","aud":"https://api.example.com/pos","exp":1767229200,"iat":1767225600,"jti":"Jx3v9Qw2mT8pLr5KzN1aYb","client_id":"pg_ck_Q2hKc3RvcmVfMTIzNDU2Nzg5MA","scope":"orders:read orders:write menu:read","sid":"se_4FJ7Q2M9XK3TRB8C","gty":"client_credentials"}`)
	headerJSON = []byte(`{"alg":"EdDSA","kid":"k_2026-01-01T00:00:00Z_7K2M9Q","typ":"at+jwt"}`)
	bodyJSON   = []byte(`{"grant_type":"client_credentials","client_id":"pg_ck_Q2hKc3RvcmVfMTIzNDU2Nzg5MA","client_secret":"pg_cs_3q2-7wE9rT1yU5iO8pA4sD6fG0hJ2kL3zX5cV7bN9mQ","audience":"https://api.example.com/pos","scope":"orders:read orders:write"}`)
)

// BenchmarkCheckObject compares CheckObject with the decoder-based implementation it replaced
// (referenceCheckObject with strings.ToLower) on the same inputs in the same run.
func BenchmarkCheckObject(b *testing.B) {
	for _, in := range []struct {
		name string
		data []byte
	}{{"claims", claimsJSON}, {"header", headerJSON}, {"body", bodyJSON}} {
		b.Run(in.name+"/decoder", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in.data)))
			for b.Loop() {
				if err := referenceCheckObject(in.data, strings.ToLower); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(in.name+"/scan", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in.data)))
			for b.Loop() {
				if err := CheckObject(in.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
