// Package jsonx decodes JSON strictly where ambiguity is a security problem: in JWT headers and
// claims and in credential-bearing request bodies. encoding/json keeps the last of duplicate keys
// and matches field names case-insensitively, so {"alg":"HS256","alg":"none"} or
// {"client_id":"a","Client_ID":"b"} could mean one thing to us and another to a proxy or a log
// reader. CheckObject refuses both before anything is decoded.
package jsonx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth bounds nesting so a hostile document cannot exhaust the stack.
const MaxDepth = 32

// ErrDuplicateKey is returned (wrapped) when an object repeats a key (compared case-insensitively).
var ErrDuplicateKey = errors.New("duplicate key")

// ErrNotObject is returned when the document is not a single JSON object.
var ErrNotObject = errors.New("not a JSON object")

var errTooDeep = errors.New("invalid JSON: nested too deeply")

// CheckObject verifies that data is exactly one JSON object (surrounding white space allowed), with
// no key repeated at any depth and nesting at most MaxDepth.
//
// Keys are compared after unescaping, case-insensitively: two keys are the same when FoldKey
// makes them equal. That is at least as strict as encoding/json's field matching (it folds with
// Unicode simple case folding, so "K", "k" and the Kelvin sign U+212A, or "s" and the long s
// U+017F, all match the same field) and as strings.ToLower (which also maps U+0130 "İ" to "i").
// So "s" and "ſ", "I" and "ı", "σ" and "ς", "μ" and the micro sign "µ" are duplicates too, as
// they are to encoding/json.
//
// The work is one pass over the bytes that validates the syntax and tracks the keys of each open
// object, without allocating for ordinary documents. Only when that pass finds the input is not
// a well-formed object is the input handed to encoding/json's decoder, so that the error (and its
// message, which callers show) is exactly the one encoding/json gives, found in the same order.
func CheckObject(data []byte) error {
	if err := scan(data); err != errSyntax {
		return err
	}
	return checkWithDecoder(data)
}

// FoldKey returns the form under which CheckObject compares keys: each rune is replaced by the
// smallest rune of its Unicode simple case-folding orbit (what encoding/json does when it matches
// a key to a field), after strings.ToLower's mapping — so U+0130 "İ", which lowercases to "i" but
// folds to nothing else, still collides with "i" and "I" as it did when keys were lowercased.
// key is the decoded key; invalid UTF-8 folds to U+FFFD, as encoding/json decodes it.
func FoldKey(key string) string {
	b := make([]byte, 0, len(key))
	for _, r := range key {
		b = appendFoldedRune(b, r)
	}
	return string(b)
}

func appendFoldedRune(b []byte, r rune) []byte {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' {
			r -= 'a' - 'A'
		}
		return append(b, byte(r))
	}
	return utf8.AppendRune(b, foldRune(unicode.ToLower(r)))
}

// foldRune returns the smallest rune of r's simple case-folding orbit (as encoding/json does).
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// errSyntax is the scanner's "not a well-formed object" verdict; CheckObject never returns it.
var errSyntax = errors.New("jsonx: syntax")

// smallObject is how many keys an object may hold before its duplicate check switches from a
// linear comparison (no allocation) to a map (linear time in the object's size).
const smallObject = 16

// frame is one open container.
type frame struct {
	object     bool
	firstKey   int                 // index in keys of the object's first key
	arenaStart int                 // where the object's folded keys start in the arena
	set        map[string]struct{} // the object's folded keys, once it has more than smallObject
}

// span is one folded key in the arena.
type span struct{ start, end int }

// scan checks data in one pass. It returns nil, a duplicate-key error, errTooDeep, or errSyntax
// for anything else (not an object, bad syntax, data after the object): the caller then asks
// encoding/json for the precise error.
func scan(data []byte) error {
	var (
		stack    [MaxDepth]frame
		keyBuf   [64]span
		arenaBuf [512]byte
	)
	keys := keyBuf[:0]    // folded keys of the open objects, innermost last
	arena := arenaBuf[:0] // their bytes
	depth := 0
	n := len(data)

	i := skipSpace(data, 0)
	if i >= n || data[i] != '{' {
		return errSyntax
	}

openObject: // data[i] == '{'
	if depth == MaxDepth {
		return errTooDeep
	}
	stack[depth] = frame{object: true, firstKey: len(keys), arenaStart: len(arena)}
	depth++
	i = skipSpace(data, i+1)
	if i < n && data[i] == '}' {
		goto closed // which pops the frame
	}

key:
	{
		if i >= n || data[i] != '"' {
			return errSyntax
		}
		start := len(arena)
		var end int
		end, arena = appendFoldedKey(arena, data, i)
		if end < 0 {
			return errSyntax
		}
		f := &stack[depth-1]
		folded := arena[start:]
		if f.set == nil {
			for _, k := range keys[f.firstKey:] {
				if bytes.Equal(arena[k.start:k.end], folded) {
					return duplicate(data[i:end])
				}
			}
			keys = append(keys, span{start, len(arena)})
			if len(keys)-f.firstKey > smallObject {
				f.set = make(map[string]struct{}, 2*smallObject)
				for _, k := range keys[f.firstKey:] {
					f.set[string(arena[k.start:k.end])] = struct{}{}
				}
			}
		} else {
			if _, dup := f.set[string(folded)]; dup {
				return duplicate(data[i:end])
			}
			f.set[string(folded)] = struct{}{}
			arena = arena[:start] // the map holds its own copy
		}
		i = skipSpace(data, end)
		if i >= n || data[i] != ':' {
			return errSyntax
		}
		i = skipSpace(data, i+1)
	}

value:
	if i >= n {
		return errSyntax
	}
	switch c := data[i]; c {
	case '{':
		goto openObject
	case '[':
		if depth == MaxDepth {
			return errTooDeep
		}
		stack[depth] = frame{}
		depth++
		i = skipSpace(data, i+1)
		if i < n && data[i] == ']' {
			goto closed
		}
		goto value
	case '"':
		i = skipString(data, i)
	case 't':
		i = skipLiteral(data, i, "true")
	case 'f':
		i = skipLiteral(data, i, "false")
	case 'n':
		i = skipLiteral(data, i, "null")
	default:
		i = skipNumber(data, i)
	}
	if i < 0 {
		return errSyntax
	}

closed: // a value ended just before data[i], or data[i] closes an empty container
	i = skipSpace(data, i)
	if depth == 0 {
		if i != n {
			return errSyntax
		}
		return nil
	}
	if i >= n {
		return errSyntax
	}
	{
		f := &stack[depth-1]
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
			if f.object {
				goto key
			}
			goto value
		case '}':
			if !f.object {
				return errSyntax
			}
			keys, arena = keys[:f.firstKey], arena[:f.arenaStart]
		case ']':
			if f.object {
				return errSyntax
			}
		default:
			return errSyntax
		}
		f.set = nil
		depth--
		i++
		goto closed
	}
}

// duplicate builds the error for a repeated key, naming it (raw is the quoted key as written) the
// way the decoder names it.
func duplicate(raw []byte) error {
	var key string
	if err := json.Unmarshal(raw, &key); err != nil { // cannot happen: raw was scanned
		return fmt.Errorf("invalid JSON: %w", err)
	}
	return fmt.Errorf("%w %q", ErrDuplicateKey, key)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// plain marks the bytes a JSON string holds as themselves: not a quote, not a backslash, not a
// control character. Bytes ≥ 0x80 are plain too (encoding/json accepts invalid UTF-8 in strings
// and decodes it as U+FFFD).
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// skipString returns the index just past the string starting at b[i] == '"', or -1 if it is not
// a valid JSON string.
func skipString(b []byte, i int) int {
	i++
	for {
		for i < len(b) && plain[b[i]] {
			i++
		}
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case '"':
			return i + 1
		case '\\':
			if i = skipEscape(b, i); i < 0 {
				return -1
			}
		default: // a control character
			return -1
		}
	}
}

// skipEscape returns the index just past the escape starting at b[i] == '\\', or -1.
func skipEscape(b []byte, i int) int {
	if i+1 >= len(b) {
		return -1
	}
	switch b[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return i + 2
	case 'u':
		if hex4(b, i+2) < 0 {
			return -1
		}
		return i + 6
	}
	return -1
}

// hex4 decodes the four hex digits at b[i:], or returns -1.
func hex4(b []byte, i int) rune {
	if i+4 > len(b) {
		return -1
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// appendFoldedKey appends the folded, decoded form of the key string starting at b[i] == '"' to
// dst and returns the index just past the string (-1 if it is not a valid JSON string).
func appendFoldedKey(dst, b []byte, i int) (int, []byte) {
	i++
	j := i
	for j < len(b) && b[j] < utf8.RuneSelf && plain[b[j]] {
		j++
	}
	// The plain ASCII run b[i:j] folds to its upper case.
	start := len(dst)
	dst = append(dst, b[i:j]...)
	for k, c := range dst[start:] {
		if 'a' <= c && c <= 'z' {
			dst[start+k] = c - ('a' - 'A')
		}
	}
	if j < len(b) && b[j] == '"' {
		return j + 1, dst
	}
	return appendFoldedKeySlow(dst, b, j)
}

// appendFoldedKeySlow continues appendFoldedKey from b[j] where escapes or non-ASCII bytes
// start. It decodes exactly as encoding/json does: an invalid UTF-8 byte or a lone surrogate
// escape becomes U+FFFD, a surrogate pair one rune.
func appendFoldedKeySlow(dst, b []byte, j int) (int, []byte) {
	for j < len(b) {
		c := b[j]
		switch {
		case c == '"':
			return j + 1, dst
		case c < 0x20:
			return -1, dst
		case c == '\\':
			if j+1 >= len(b) {
				return -1, dst
			}
			switch b[j+1] {
			case '"', '\\', '/':
				dst = append(dst, b[j+1])
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := hex4(b, j+2)
				if r < 0 {
					return -1, dst
				}
				j += 6
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if j+1 < len(b) && b[j] == '\\' && b[j+1] == 'u' {
						r2 = hex4(b, j+2)
					}
					if pair := utf16.DecodeRune(r, r2); pair != unicode.ReplacementChar {
						j += 6
						r = pair
					} else {
						r = unicode.ReplacementChar
					}
				}
				dst = appendFoldedRune(dst, r)
				continue
			default:
				return -1, dst
			}
			j += 2
		case c < utf8.RuneSelf:
			dst = appendFoldedRune(dst, rune(c))
			j++
		default:
			r, size := utf8.DecodeRune(b[j:])
			dst = appendFoldedRune(dst, r)
			j += size
		}
	}
	return -1, dst
}

// skipLiteral returns the index just past lit at b[i:], or -1.
func skipLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// skipNumber returns the index just past the number at b[i:], or -1. What follows is checked by
// the caller (a number must be followed by white space, ',', '}', ']' or the end).
func skipNumber(b []byte, i int) int {
	n := len(b)
	if i < n && b[i] == '-' {
		i++
	}
	switch {
	case i >= n:
		return -1
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		i++
		for i < n && isDigit(b[i]) {
			i++
		}
	default:
		return -1
	}
	if i < n && b[i] == '.' {
		i++
		if i >= n || !isDigit(b[i]) {
			return -1
		}
		for i < n && isDigit(b[i]) {
			i++
		}
	}
	if i < n && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < n && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= n || !isDigit(b[i]) {
			return -1
		}
		for i < n && isDigit(b[i]) {
			i++
		}
	}
	return i
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// checkWithDecoder is CheckObject by encoding/json's token stream. It is slow (it allocates per
// token) but its errors are encoding/json's own, found in the order a streaming decoder finds
// them; CheckObject uses it only for input the fast scan found malformed.
func checkWithDecoder(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return ErrNotObject
	}
	if err := decoderObject(dec, 1); err != nil {
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

// decoderObject reads the members of an object whose '{' was consumed.
func decoderObject(dec *json.Decoder, depth int) error {
	if depth > MaxDepth {
		return errTooDeep
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
		folded := FoldKey(key)
		if _, dup := seen[folded]; dup {
			return fmt.Errorf("%w %q", ErrDuplicateKey, key)
		}
		seen[folded] = struct{}{}
		if err := decoderValue(dec, depth); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return fmt.Errorf("invalid JSON: %w", err)
	}
	return nil
}

func decoderValue(dec *json.Decoder, depth int) error {
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
		return decoderObject(dec, depth+1)
	case '[':
		if depth+1 > MaxDepth {
			return errTooDeep
		}
		for dec.More() {
			if err := decoderValue(dec, depth+1); err != nil {
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

// Decode checks data with CheckObject, then decodes it into v refusing unknown fields when
// disallowUnknown is set. Numbers decode as json.Number into interface values.
func Decode(data []byte, v any, disallowUnknown bool) error {
	if err := CheckObject(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if disallowUnknown {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	return nil
}
