// Package httpx holds the small HTTP helpers every endpoint shares: bounded body reading, strict
// JSON bodies, JSON responses, and the canonical-path rule.
package httpx

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/jsonx"
)

// DefaultMaxBody is the body limit when the caller gives none.
const DefaultMaxBody = 1 << 20

// ReadBody reads at most max bytes of r's body; a longer body is a TooLarge error ("body_too_large",
// 413 on every surface, each in its own shape).
func ReadBody(r *http.Request, max int64) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxBody
	}
	if r.Body == nil {
		return nil, nil
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errs.New(errs.TooLarge, "body_too_large", "request body is too large")
		}
		return nil, errs.Wrap(errs.BadInput, "body_unreadable", "request body could not be read", err)
	}
	if int64(len(data)) > max {
		return nil, errs.New(errs.TooLarge, "body_too_large", "request body is too large")
	}
	return data, nil
}

// IsJSON reports whether the request's Content-Type is application/json. JSON is UTF-8 (RFC 8259
// §8.1): a charset parameter naming anything else is refused, since the bytes would be read as
// something the sender did not mean.
func IsJSON(r *http.Request) bool {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "utf8")
}

// IsForm reports whether the request's Content-Type is application/x-www-form-urlencoded.
func IsForm(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// ReadJSON reads a JSON object body into v: Content-Type must be application/json, the body at most
// max bytes, exactly one object with no duplicate keys; unknown fields are refused when strict.
// Every failure is a BadInput *errs.Error whose Message is safe to show.
func ReadJSON(r *http.Request, max int64, v any, strict bool) error {
	if !IsJSON(r) {
		return errs.New(errs.BadInput, "unsupported_content_type", "Content-Type must be application/json (UTF-8)")
	}
	data, err := ReadBody(r, max)
	if err != nil {
		return err
	}
	return DecodeJSON(data, v, strict)
}

// DecodeJSON decodes data, one JSON object without duplicate keys, into v; unknown fields are
// refused when strict. Text that is not valid UTF-8 is refused (encoding/json would silently store
// U+FFFD in its place). Every failure is a BadInput *errs.Error ("invalid_json") whose Message
// names the field or the byte at fault and never Go type names or a value.
func DecodeJSON(data []byte, v any, strict bool) error {
	if !utf8.Valid(data) {
		return errs.New(errs.BadInput, "invalid_json", "request body is not valid UTF-8")
	}
	if err := jsonx.Decode(data, v, strict); err != nil {
		return errs.Wrap(errs.BadInput, "invalid_json", jsonMessage(err), err)
	}
	return nil
}

// jsonMessage turns a decode error into a message safe to show and free of Go internals (struct
// and type names): it names the offending field and what it must be, or where the syntax broke.
// Values are never echoed.
func jsonMessage(err error) string {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		msg string
	)
	switch {
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			msg = "the body must be a JSON object"
		} else {
			msg = "field " + field + " must be " + jsonKind(typ.Type.Kind().String())
		}
	case errors.As(err, &syn):
		msg = "invalid JSON at byte " + strconv.FormatInt(syn.Offset, 10)
	default:
		text := err.Error()
		if _, name, ok := strings.Cut(text, "json: unknown field "); ok {
			msg = "unknown field " + strings.Trim(name, `"`)
		} else if strings.Contains(text, "duplicate") {
			msg = "the body must be one JSON object without duplicate keys"
		} else {
			msg = "the body must be one JSON object"
		}
	}
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return "request body is not valid: " + msg
}

// jsonKind names a Go kind the way a JSON author thinks of it.
func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	}
	return "of another type"
}

// WriteJSON writes v as JSON with the given status. Responses carrying credentials should set
// Cache-Control: no-store before calling.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

// NoStore marks a response as never cacheable (token responses, RFC 6749 §5.1).
func NoStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// CheckPath enforces the canonical-path rule: a path holding dot segments (plain or
// percent-encoded), an encoded slash or backslash, a backslash, or a NUL (plain or encoded) is
// refused, so the route that matched is exactly the path the upstream sees. rawPath is the request
// target's path as sent (r.URL.EscapedPath() or r.RequestURI without the query).
func CheckPath(rawPath string) error {
	if plainPath(rawPath) {
		return nil // nothing in it can be a dot segment, an encoded slash, a backslash or a NUL
	}
	return checkPathSlow(rawPath)
}

// plainPath reports whether p starts with '/' and holds none of '.', '%', '\\', NUL or "//": such a
// path is canonical without further checks (and is what nearly every request carries, so the
// check costs one scan and no allocation).
func plainPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 1; i < len(p); i++ {
		switch p[i] {
		case '.', '%', '\\', 0:
			return false
		case '/':
			if p[i-1] == '/' {
				return false
			}
		}
	}
	return true
}

// checkPathSlow is the full check, for paths plainPath cannot vouch for.
func checkPathSlow(rawPath string) error {
	if rawPath == "" || rawPath[0] != '/' {
		if rawPath == "*" {
			return errs.New(errs.BadInput, "non_canonical_path", "request path is not canonical")
		}
		return errs.New(errs.BadInput, "non_canonical_path", "request path must start with /")
	}
	lower := strings.ToLower(rawPath)
	// An encoded '%' (%25) may be decoded once more by an upstream or a framework behind it:
	// %252e%252e%252f is ../ to it. Peel every layer before checking (each pass shortens the
	// string, so the loop ends).
	for strings.Contains(lower, "%25") {
		lower = strings.ReplaceAll(lower, "%25", "%")
	}
	if strings.ContainsAny(lower, "\\\x00") ||
		strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(lower, "%00") ||
		strings.Contains(lower, "//") {
		return errs.New(errs.BadInput, "non_canonical_path", "request path is not canonical")
	}
	// Dot segments, with '.' possibly percent-encoded (%2e).
	for _, seg := range strings.Split(lower, "/")[1:] {
		s := strings.ReplaceAll(seg, "%2e", ".")
		if s == "." || s == ".." {
			return errs.New(errs.BadInput, "non_canonical_path", "request path is not canonical")
		}
	}
	return nil
}

// RequestPath returns the path of r's request target as the client sent it (escaped form).
func RequestPath(r *http.Request) string {
	if r.URL.RawPath != "" {
		return r.URL.RawPath
	}
	return r.URL.EscapedPath()
}
