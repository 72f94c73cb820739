package jsonx

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckObject(t *testing.T) {
	cases := []struct {
		in      string
		wantErr string // "" = valid; else a substring of the error
	}{
		{`{}`, ""},
		{` {"a":1,"b":[1,{"c":2}],"d":{"e":null}} `, ""},
		{`{"a":1,"a":2}`, "duplicate key"},
		{`{"alg":"HS256","ALG":"none"}`, "duplicate key"},
		{`{"a":{"b":1,"b":2}}`, "duplicate key"},
		{`{"a":[{"b":1,"b":2}]}`, "duplicate key"},
		{`{"a":{"b":1},"b":2}`, ""}, // same key at different depths is fine
		{`[]`, "not a JSON object"},
		{`"x"`, "not a JSON object"},
		{`{"a":1}{}`, "data after the object"},
		{`{"a":1`, "invalid JSON"},
		{`{"a":}`, "invalid JSON"},
		{``, "invalid JSON"},
		{strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat(`}`, 40), "nested too deeply"},
		{`{"a":` + strings.Repeat(`[`, 40) + strings.Repeat(`]`, 40) + `}`, "nested too deeply"},
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
