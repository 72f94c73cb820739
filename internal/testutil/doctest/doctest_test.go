package doctest

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestBlocks(t *testing.T) {
	md := "# Title\n\n```sh\necho hi\necho there\n```\n\nprose ``inline``\n\n```\n```\n\n```json\n{\"a\":1}\n```\n\n```text\nnever closed\n"
	path := filepath.Join(t.TempDir(), "page.md")
	if err := os.WriteFile(path, []byte(md), 0o600); err != nil {
		t.Fatal(err)
	}
	want := []Block{
		{Lang: "sh", Body: "echo hi\necho there\n", Line: 3},
		{Lang: "", Body: "", Line: 10},
		{Lang: "json", Body: "{\"a\":1}\n", Line: 13},
	}
	if got := Blocks(t, path); !reflect.DeepEqual(got, want) {
		t.Fatalf("Blocks:\n got  %+v\n want %+v", got, want)
	}
}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{
		{"abc", "abc", true},
		{"abc", "abcd", false},
		{`{"token":"…"}`, `{"token":"pg_at_x"}`, true},
		{`{"token":"…"}`, `{"token":"x"} extra`, false},
		{"a…b…c", "abc", true},
		{"a…b…c", "axxbyyc", true},
		{"a…b…c", "acb", false},
		{"ab…b", "ab", false}, // the parts may not overlap
		{"…", "", true},
		{"x…", "y", false},
	} {
		if got := Match(c.pattern, c.s); got != c.want {
			t.Errorf("Match(%q, %q) = %v", c.pattern, c.s, got)
		}
	}
	if !ContainsLine("first\n  {\"ok\":true}  \nlast", `{"ok":…}`) || ContainsLine("first\nlast", "fir…x") {
		t.Error("ContainsLine")
	}
}
