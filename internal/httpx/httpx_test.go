package httpx

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/errs"
)

func TestCheckPath(t *testing.T) {
	ok := []string{"/", "/a", "/a/b/", "/v2/stores/123/offers/x.y", "/a/.well-known", "/a/..b", "/a/b..", "/%41", "/files/100%25", "/a%2541"}
	bad := []string{"", "*", "a", "/a/../b", "/a/./b", "/..", "/a/..", "/a/%2e%2e/b", "/a/%2E./b", "/a/.%2e",
		"/a%2fb", "/a%2Fb", "/a\\b", "/a%5cb", "/a\x00", "/a%00", "//a", "/a//b",
		"/a/%252e%252e/b", "/a%252fb", "/a/%25252E%25252E/x", "/a%255cb", "/a%2500", "/%252e%252e%252f"}
	for _, p := range ok {
		if err := CheckPath(p); err != nil {
			t.Errorf("CheckPath(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range bad {
		if err := CheckPath(p); err == nil || errs.KindOf(err) != errs.BadInput {
			t.Errorf("CheckPath(%q) = %v, want a bad-input error", p, err)
		}
	}
}

func TestReadJSON(t *testing.T) {
	var v struct {
		A string `json:"a"`
	}
	req := func(ct, body string) error {
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		r.Header.Set("Content-Type", ct)
		return ReadJSON(r, 20, &v, true)
	}
	if err := req("application/json; charset=utf-8", `{"a":"x"}`); err != nil || v.A != "x" {
		t.Fatalf("ReadJSON = %v, %+v", err, v)
	}
	for name, err := range map[string]error{
		"content type": req("text/plain", `{"a":"x"}`),
		"duplicate":    req("application/json", `{"a":"x","a":"y"}`),
		"unknown":      req("application/json", `{"b":1}`),
		"not object":   req("application/json", `[1]`),
		"not UTF-8":    req("application/json", "{\"a\":\"\xff\"}"),
		"latin-1":      req("application/json; charset=iso-8859-1", `{"a":"x"}`),
	} {
		if errs.KindOf(err) != errs.BadInput {
			t.Errorf("%s: ReadJSON = %v, want bad input", name, err)
		}
	}
	if err := req("application/json", `{"a":"xxxxxxxxxxxxxxxxxxxxxxx"}`); errs.KindOf(err) != errs.TooLarge {
		t.Errorf("too large: ReadJSON = %v, want too large", err)
	}
}

func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/a%2fb", "/a/%2e%2E/b", "/v2/stores/{store}", "//a", "/a//b", "/a/", "a/b", "/\x00", "/a\\b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		// The fast path vouches only for paths the full check accepts.
		if plainPath(p) && checkPathSlow(p) != nil {
			t.Fatalf("plainPath passes %q, the full check refuses it: %v", p, checkPathSlow(p))
		}
		if CheckPath(p) != nil {
			return
		}
		// Anything accepted has no segment that path cleaning would change.
		for _, seg := range strings.Split(strings.ToLower(strings.ReplaceAll(strings.ToLower(p), "%2e", ".")), "/")[1:] {
			if seg == "." || seg == ".." {
				t.Fatalf("accepted dot segment in %q", p)
			}
		}
		if strings.ContainsAny(p, "\\\x00") {
			t.Fatalf("accepted %q", p)
		}
	})
}
