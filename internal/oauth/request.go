package oauth

import (
	"bytes"
	"encoding/json"
	"net/url"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/jsonx"
)

// Limits of a request to the OAuth endpoints. A token request is a handful of short strings; the
// caps keep a hostile body from costing more than a few kilobytes of work.
const (
	MaxBodyBytes  = 16 << 10 // whole body
	MaxParamBytes = 8 << 10  // any one value (a token to introspect or revoke may be a JWT of up to token.MaxTokenBytes)
	MaxParams     = 32       // number of parameters
)

// Body kinds a token, introspection or revocation request may use.
const (
	BodyJSON = "json" // application/json (Auth0's and chimpy's documented form)
	BodyForm = "form" // application/x-www-form-urlencoded (RFC 6749 clients, golang.org/x/oauth2)
)

// Request holds the parameters of a request to /oauth/token, /oauth/introspect or /oauth/revoke.
// Parameters sent with an empty value are treated as omitted (RFC 6749 §3.1); parameters posgate
// does not know are ignored, as RFC 6749 §3.1 requires, but kept in Params for grants registered
// later.
type Request struct {
	GrantType     string
	ClientID      string
	ClientSecret  string
	Audience      string
	Scope         string
	Username      string
	Password      string
	RefreshToken  string
	Token         string // introspection and revocation
	TokenTypeHint string // revocation
	Params        map[string]string
}

// known maps each parameter name to its field; a parameter named here must be a string (or null,
// meaning omitted) in a JSON body.
func (r *Request) field(name string) *string {
	switch name {
	case "grant_type":
		return &r.GrantType
	case "client_id":
		return &r.ClientID
	case "client_secret":
		return &r.ClientSecret
	case "audience":
		return &r.Audience
	case "scope":
		return &r.Scope
	case "username":
		return &r.Username
	case "password":
		return &r.Password
	case "refresh_token":
		return &r.RefreshToken
	case "token":
		return &r.Token
	case "token_type_hint":
		return &r.TokenTypeHint
	}
	return nil
}

func invalidRequest(desc string) *errs.Error {
	return errs.New(errs.BadInput, CodeInvalidRequest, desc)
}

// ParseRequest parses a request body of the given kind (BodyJSON or BodyForm). Every failure is an
// invalid_request *errs.Error whose description names the problem but never echoes a value, since
// values here are passwords and secrets.
//
// JSON bodies must be one object without duplicate keys (compared case-insensitively, see jsonx);
// known parameters must be strings. Form bodies must not repeat a parameter (RFC 6749 §3.2) and
// must not use ';' as a separator. Every value must be valid UTF-8 without control characters and at
// most MaxParamBytes long.
func ParseRequest(kind string, body []byte) (*Request, error) {
	if len(body) > MaxBodyBytes {
		return nil, invalidRequest("request body is too large")
	}
	req := &Request{}
	switch kind {
	case BodyJSON:
		if err := parseJSON(req, body); err != nil {
			return nil, err
		}
	case BodyForm:
		if err := parseForm(req, body); err != nil {
			return nil, err
		}
	default:
		return nil, invalidRequest("Content-Type must be application/json or application/x-www-form-urlencoded")
	}
	return req, nil
}

func parseJSON(req *Request, body []byte) error {
	if err := jsonx.CheckObject(body); err != nil {
		return invalidRequest("request body must be a single JSON object without duplicate keys")
	}
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return invalidRequest("request body must be a single JSON object")
	}
	if len(m) > MaxParams {
		return invalidRequest("too many parameters")
	}
	for name, raw := range m {
		f := req.field(name)
		raw = bytes.TrimSpace(raw)
		if bytes.Equal(raw, []byte("null")) {
			continue // omitted
		}
		if len(raw) == 0 || raw[0] != '"' {
			if f != nil {
				return invalidRequest("parameter " + safeName(name) + " must be a string")
			}
			continue // an unknown non-string parameter is ignored
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return invalidRequest("parameter " + safeName(name) + " is not a valid string")
		}
		if err := set(req, name, f, v); err != nil {
			return err
		}
	}
	return nil
}

func parseForm(req *Request, body []byte) error {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return invalidRequest("request body is not a valid form")
	}
	if len(vals) > MaxParams {
		return invalidRequest("too many parameters")
	}
	for name, vs := range vals {
		if len(vs) > 1 {
			return invalidRequest("parameter " + safeName(name) + " is repeated")
		}
		if err := set(req, name, req.field(name), vs[0]); err != nil {
			return err
		}
	}
	return nil
}

func set(req *Request, name string, f *string, v string) error {
	if !validName(name) {
		return invalidRequest("a parameter name is not valid")
	}
	if len(v) > MaxParamBytes {
		return invalidRequest("parameter " + name + " is too long")
	}
	if !validValue(v) {
		return invalidRequest("parameter " + name + " contains invalid characters")
	}
	if v == "" {
		return nil // RFC 6749 §3.1: sent without a value = omitted
	}
	if f != nil {
		*f = v
		return nil
	}
	if req.Params == nil {
		req.Params = map[string]string{}
	}
	req.Params[name] = v
	return nil
}

// validName accepts parameter names made of printable ASCII (what RFC 6749 names use, and what is
// safe to repeat in an error description).
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\' {
			return false
		}
	}
	return true
}

func safeName(s string) string {
	if validName(s) {
		return s
	}
	return "(unnamed)"
}

// validValue accepts UTF-8 without C0 controls or DEL. Passwords and usernames with such bytes
// cannot be created either (see ValidPassword), so refusing them here changes no answer.
func validValue(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}
