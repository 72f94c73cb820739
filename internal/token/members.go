package token

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// members calls fn for each top-level member of obj, in order, with the member's key (still
// escaped when escaped is true, without its quotes) and its raw value. It stops early when fn
// returns false.
//
// obj must already have passed jsonx.CheckObject: members trusts the syntax and only finds the
// boundaries, which is what makes it cheap (no allocation, one pass). It still never reads out of
// bounds, and reports false if the input is not shaped as it expects.
func members(obj []byte, fn func(key []byte, escaped bool, val []byte) bool) bool {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return false
	}
	i = skipWS(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return true
	}
	for i < len(obj) {
		if obj[i] != '"' {
			return false
		}
		end, escaped := scanString(obj, i)
		if end < 0 {
			return false
		}
		key := obj[i+1 : end-1]
		i = skipWS(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return false
		}
		i = skipWS(obj, i+1)
		vEnd := scanValue(obj, i)
		if vEnd < 0 {
			return false
		}
		if !fn(key, escaped, obj[i:vEnd]) {
			return true
		}
		i = skipWS(obj, vEnd)
		if i >= len(obj) {
			return false
		}
		switch obj[i] {
		case ',':
			i = skipWS(obj, i+1)
		case '}':
			return true
		default:
			return false
		}
	}
	return false
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the index just past the string starting at b[i] == '"' (-1 if unterminated)
// and whether it holds an escape.
func scanString(b []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped
		}
	}
	return -1, escaped
}

// scanValue returns the index just past the value starting at b[i] (-1 if it runs off the end).
func scanValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := scanString(b, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _ := scanString(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default: // number, true, false, null
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}

// memberKey returns a member's key as encoding/json reads it: unescaped, invalid UTF-8 replaced.
func memberKey(key []byte, escaped bool) (string, bool) {
	if !escaped && utf8.Valid(key) {
		return string(key), true
	}
	var s string
	if err := json.Unmarshal(append(append([]byte{'"'}, key...), '"'), &s); err != nil {
		return "", false
	}
	return s, true
}

// keyIs reports whether a member's key is exactly name (escapes are resolved first, so
// "\u0061lg" is "alg", as every JSON reader sees it). name is plain ASCII.
func keyIs(key []byte, escaped bool, name string) bool {
	if !escaped {
		return string(key) == name // no allocation: the compiler compares in place
	}
	s, ok := memberKey(key, escaped)
	return ok && s == name
}

// jsonString decodes a raw JSON value that must be a string. The common case — no escapes, valid
// UTF-8 — is a plain copy; anything else goes through encoding/json so the result is exactly
// what encoding/json would produce.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	body := raw[1 : len(raw)-1]
	if bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body) {
		return string(body), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}
