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
	"strings"
)

// MaxDepth bounds nesting so a hostile document cannot exhaust the stack.
const MaxDepth = 32

// ErrDuplicateKey is returned (wrapped) when an object repeats a key (compared case-insensitively).
var ErrDuplicateKey = errors.New("duplicate key")

// ErrNotObject is returned when the document is not a single JSON object.
var ErrNotObject = errors.New("not a JSON object")

// CheckObject verifies that data is exactly one JSON object (surrounding white space allowed), with
// no key repeated at any depth (keys compared case-insensitively, as encoding/json matches them)
// and nesting at most MaxDepth.
func CheckObject(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return ErrNotObject
	}
	if err := checkObject(dec, 1); err != nil {
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

// checkObject reads the members of an object whose '{' was consumed.
func checkObject(dec *json.Decoder, depth int) error {
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
		folded := strings.ToLower(key)
		if _, dup := seen[folded]; dup {
			return fmt.Errorf("%w %q", ErrDuplicateKey, key)
		}
		seen[folded] = struct{}{}
		if err := checkValue(dec, depth); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return fmt.Errorf("invalid JSON: %w", err)
	}
	return nil
}

func checkValue(dec *json.Decoder, depth int) error {
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
		return checkObject(dec, depth+1)
	case '[':
		if depth+1 > MaxDepth {
			return errors.New("invalid JSON: nested too deeply")
		}
		for dec.More() {
			if err := checkValue(dec, depth+1); err != nil {
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
