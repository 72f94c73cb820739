// Package jsonrpc is a strict JSON-RPC 2.0 codec (https://www.jsonrpc.org/specification): it
// parses a request body (one call or a batch) into calls, and encodes responses. It knows nothing of
// HTTP or of any method; the chef dialect builds its endpoint on it.
//
// Decisions the specification leaves open, taken here once:
//   - An id is echoed byte for byte: a number keeps its literal (1.0 stays 1.0, 12345678901234567890
//     is not rounded through float64), a string keeps its escapes. Ids that are objects, arrays or
//     booleans make the call invalid (-32600, answered with id null).
//   - A call whose id could be read is answered with that id even when the call is otherwise
//     invalid; a call whose id could not be read is answered with id null (§5).
//   - Duplicate member names (compared case-insensitively, at any depth) make a call invalid: a
//     proxy that keeps the first "method" and a server that keeps the last must never disagree.
//   - Invalid UTF-8 anywhere in the body is a parse error (RFC 8259 §8.1).
//   - An empty batch, and a batch longer than the configured limit, are answered with one -32600
//     error object (not an array), like the specification's "[]" example.
package jsonrpc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/jsonx"
)

// Version is the only protocol version accepted and sent.
const Version = "2.0"

// The standard error codes (§5.1).
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
)

// DefaultMaxBatch is the batch limit when Limits.MaxBatch is 0.
const DefaultMaxBatch = 20

// Error is a JSON-RPC error object.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("jsonrpc: %d %s", e.Code, e.Message) }

// NewError returns an error object with the standard message for code and data (may be nil)
// carrying the detail.
func NewError(code int, data any) *Error {
	return &Error{Code: code, Message: StandardMessage(code), Data: data}
}

// StandardMessage is the message the specification gives each standard code.
func StandardMessage(code int) string {
	switch code {
	case CodeParseError:
		return "Parse error"
	case CodeInvalidRequest:
		return "Invalid Request"
	case CodeMethodNotFound:
		return "Method not found"
	case CodeInvalidParams:
		return "Invalid params"
	case CodeInternalError:
		return "Internal error"
	}
	return "Server error"
}

// Null is the id literal used when a call's id could not be determined.
var Null = json.RawMessage("null")

// Call is one request object of a body. When Err is set the call was invalid and must be answered
// with Err and ID (ID is Null when the id could not be read); otherwise Method is set and the call
// is a notification exactly when ID is nil.
type Call struct {
	Method string
	Params json.RawMessage // nil when absent; otherwise a JSON array or object
	ID     json.RawMessage // the id literal as received; nil when absent (a notification)
	Raw    json.RawMessage // the request object as received (white space trimmed)
	Err    *Error
}

// IsNotification reports whether c is a valid call without an id: it gets no response.
func (c *Call) IsNotification() bool { return c.Err == nil && c.ID == nil }

// Body is a parsed request body.
type Body struct {
	Batch bool // the body was an array
	Calls []Call
}

// Limits bound what Parse accepts.
type Limits struct {
	MaxBatch int // most calls in a batch; 0 means DefaultMaxBatch
}

// Parse parses a request body. A fault of the body as a whole (not JSON: -32700; not an object or
// a non-empty array within the batch limit: -32600) is returned as an error object to be answered
// alone with id null; otherwise every element of the body becomes a Call, in order.
func Parse(data []byte, lim Limits) (*Body, *Error) {
	max := lim.MaxBatch
	if max <= 0 {
		max = DefaultMaxBatch
	}
	data = trimSpace(data)
	if len(data) == 0 {
		return nil, NewError(CodeParseError, "empty body")
	}
	if !utf8.Valid(data) {
		return nil, NewError(CodeParseError, "body is not valid UTF-8")
	}
	if !json.Valid(data) {
		return nil, NewError(CodeParseError, "body is not valid JSON")
	}
	switch data[0] {
	case '{':
		return &Body{Calls: []Call{parseCall(data)}}, nil
	case '[':
		var elems []json.RawMessage
		if err := json.Unmarshal(data, &elems); err != nil {
			// json.Valid accepted it, so this is only reachable through nesting limits.
			return nil, NewError(CodeParseError, "body is not valid JSON")
		}
		if len(elems) == 0 {
			return nil, NewError(CodeInvalidRequest, "empty batch")
		}
		if len(elems) > max {
			return nil, NewError(CodeInvalidRequest, fmt.Sprintf("batch of %d calls exceeds the limit of %d", len(elems), max))
		}
		b := &Body{Batch: true, Calls: make([]Call, len(elems))}
		for i, e := range elems {
			b.Calls[i] = parseCall(trimSpace(e))
		}
		return b, nil
	default:
		return nil, NewError(CodeInvalidRequest, "request must be an object or an array of objects")
	}
}

// parseCall validates one request object (already known to be valid JSON).
func parseCall(raw []byte) Call {
	c := Call{Raw: raw}
	invalid := func(id json.RawMessage, detail string) Call {
		if id == nil {
			id = Null
		}
		c.ID, c.Method, c.Params = id, "", nil
		c.Err = NewError(CodeInvalidRequest, detail)
		return c
	}
	if len(raw) == 0 || raw[0] != '{' {
		return invalid(nil, "request must be an object")
	}
	if err := jsonx.CheckObject(raw); err != nil {
		return invalid(nil, sanitize(err.Error()))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return invalid(nil, "request must be an object")
	}
	var id json.RawMessage
	if v, ok := m["id"]; ok {
		if !validID(v) {
			return invalid(nil, "id must be a string, a number or null")
		}
		id = v
	}
	v, ok := m["jsonrpc"]
	var version string
	if !ok || json.Unmarshal(v, &version) != nil || version != Version {
		return invalid(id, `jsonrpc must be exactly "2.0"`)
	}
	v, ok = m["method"]
	if !ok || len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &c.Method) != nil {
		return invalid(id, "method must be a string")
	}
	if p, ok := m["params"]; ok {
		if p[0] != '[' && p[0] != '{' {
			return invalid(id, "params must be an array or an object")
		}
		c.Params = p
	}
	c.ID = id
	return c
}

// validID reports whether v (a valid JSON value with no surrounding space) may be an id.
func validID(v json.RawMessage) bool {
	if len(v) == 0 {
		return false
	}
	switch c := v[0]; {
	case c == '"':
		return true
	case c == '-' || (c >= '0' && c <= '9'):
		return true
	case string(v) == "null":
		return true
	}
	return false
}

// trimSpace removes JSON white space (RFC 8259 §2) around data.
func trimSpace(data []byte) []byte {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	for len(data) > 0 && isSpace(data[0]) {
		data = data[1:]
	}
	for len(data) > 0 && isSpace(data[len(data)-1]) {
		data = data[:len(data)-1]
	}
	return data
}

// sanitize keeps an error detail short and free of control characters.
func sanitize(s string) string {
	const max = 160
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			continue
		}
		b = utf8.AppendRune(b, r)
		if len(b) >= max {
			break
		}
	}
	return string(b)
}

// Response is one response object. Exactly one of Result and Error is set; ID is the call's id
// literal (nil is written as null).
type Response struct {
	ID     json.RawMessage
	Result json.RawMessage
	Error  *Error
}

// Success returns a response carrying v (marshalled with encoding/json) as the result.
func Success(id json.RawMessage, v any) (Response, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Response{}, err
	}
	return Response{ID: id, Result: b}, nil
}

// Failure returns a response carrying e.
func Failure(id json.RawMessage, e *Error) Response { return Response{ID: id, Error: e} }

// AppendJSON appends r's encoding to dst: {"jsonrpc":"2.0","id":…,"result":…} or with "error".
// The id is copied byte for byte, which is why responses are not built with encoding/json (it
// would rewrite "<" inside a string id as \u003c).
func (r Response) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	if len(r.ID) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, r.ID...)
	}
	if r.Error != nil {
		dst = append(dst, `,"error":`...)
		b, err := json.Marshal(r.Error)
		if err != nil { // Data that cannot be marshalled: drop it rather than fail the answer.
			b, _ = json.Marshal(&Error{Code: r.Error.Code, Message: r.Error.Message})
		}
		dst = append(dst, b...)
	} else {
		dst = append(dst, `,"result":`...)
		if len(r.Result) == 0 {
			dst = append(dst, "null"...)
		} else {
			dst = append(dst, r.Result...)
		}
	}
	return append(dst, '}')
}

// MarshalJSON implements json.Marshaler.
func (r Response) MarshalJSON() ([]byte, error) { return r.AppendJSON(nil), nil }

// EncodeBatch encodes responses as a JSON array.
func EncodeBatch(rs []Response) []byte {
	buf := make([]byte, 0, 128*len(rs)+2)
	buf = append(buf, '[')
	for i, r := range rs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = r.AppendJSON(buf)
	}
	return append(buf, ']')
}

// IDString is a readable form of an id literal for logs and tests ("null" when nil).
func IDString(id json.RawMessage) string {
	if len(id) == 0 {
		return "null"
	}
	return string(bytes.TrimSpace(id))
}

// IntID returns the literal of an integer id, for callers that build requests.
func IntID(n int64) json.RawMessage { return json.RawMessage(strconv.FormatInt(n, 10)) }
