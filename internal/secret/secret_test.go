package secret

import (
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
)

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for _, prefix := range []string{PrefixClientSecret, PrefixClientID, PrefixRefreshToken, ""} {
		for range 100 {
			s := Generate(prefix)
			rest, ok := strings.CutPrefix(s, prefix)
			if !ok {
				t.Fatalf("Generate(%q) = %q: prefix missing", prefix, s)
			}
			if len(rest) != 43 {
				t.Fatalf("Generate(%q): %d characters after the prefix, want 43", prefix, len(rest))
			}
			raw, err := base64.RawURLEncoding.Strict().DecodeString(rest)
			if err != nil || len(raw) != 32 {
				t.Fatalf("Generate(%q) = %q: not base64url of 32 bytes (%v)", prefix, s, err)
			}
			if seen[rest] {
				t.Fatalf("Generate repeated %q", rest)
			}
			seen[rest] = true
		}
	}
}

func TestHash(t *testing.T) {
	// SHA-256("abc"), FIPS 180-2 appendix B.1.
	want := "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := hex.EncodeToString(Hash("abc")); got != want {
		t.Fatalf("Hash(abc) = %s, want %s", got, want)
	}
}

func TestEqual(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"", "", true},
		{"abc", "abc", true},
		{"abc", "abd", false},
		{"abc", "ab", false},
		{"", "a", false},
	} {
		if got := Equal([]byte(c.a), []byte(c.b)); got != c.want {
			t.Errorf("Equal(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestNewID(t *testing.T) {
	re := regexp.MustCompile(`^cl_[a-z2-7]{16}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := NewID("cl_")
		if !re.MatchString(id) {
			t.Fatalf("NewID = %q, want cl_ + 16 base32 characters", id)
		}
		if seen[id] {
			t.Fatalf("NewID repeated %q", id)
		}
		seen[id] = true
	}
}
