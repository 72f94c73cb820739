package httpx

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
)

// allowedDescription reports whether s holds only %x20-21 / %x23-5B / %x5D-7E.
func allowedDescription(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func TestSafeDescription(t *testing.T) {
	for in, want := range map[string]string{
		"plain text: ok!":            "plain text: ok!",
		`alg must be HS256 ("none")`: `alg must be HS256 ('none')`,
		`a\b`:                        `a/b`,
		"tab\there":                  "tab?here",
		"caf\u00e9":                  "caf?",
		"bad \xff utf8":              "bad ? utf8",
		"":                           "",
	} {
		if got := SafeDescription(in); got != want {
			t.Errorf("SafeDescription(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteErrorSanitises(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, 400, "invalid_request", `the alg "none\" is refused`)
	var body ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if !allowedDescription(body.Description) || body.Error != "invalid_request" || rec.Code != 400 {
		t.Fatalf("got %d %+v", rec.Code, body)
	}
}

func FuzzSafeDescription(f *testing.F) {
	for _, s := range []string{"", "ok", `"\`, "\x00\x7f\u00e9\xff", "alg must be HS256 (\"x\")"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := SafeDescription(s)
		if !allowedDescription(got) {
			t.Fatalf("SafeDescription(%q) = %q holds a forbidden character", s, got)
		}
		if allowedDescription(s) && got != s {
			t.Fatalf("an allowed description changed: %q -> %q", s, got)
		}
	})
}
