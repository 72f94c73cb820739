package httpx

import (
	"github.com/posgate/posgate/internal/errs"
	"net/http"
	"strings"
)

// ErrorBody is the RFC 6749 §5.2 error shape {"error","error_description"} that posgate's own
// endpoints, the admin API and the OAuth-style dialects answer with.
type ErrorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// WriteError writes {"error": code, "error_description": desc} with status. desc passes through
// SafeDescription, so no caller can put a character RFC 6749 forbids into the body, whatever text
// (an echoed alg, a library's message) ended up in it.
func WriteError(w http.ResponseWriter, status int, code, desc string) {
	WriteJSON(w, status, ErrorBody{Error: code, Description: SafeDescription(desc)})
}

// SafeDescription maps s into the character set RFC 6749 §5.2 and RFC 6750 §3 allow in
// error_description (%x20-21 / %x23-5B / %x5D-7E): a double quote becomes a single quote, a
// backslash a slash, and any other character outside the set (controls, DEL, non-ASCII) a '?'.
// The result is safe both in a JSON body and inside a quoted WWW-Authenticate attribute.
func SafeDescription(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteByte('\'')
		case r == '\\':
			b.WriteByte('/')
		case r < 0x20 || r > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// ErrorCode is the "error" member the admin API writes for an error of kind k ("" for Internal
// and unknown kinds: the caller answers server_error and hides the message).
func ErrorCode(k errs.Kind) string {
	switch k {
	case errs.BadInput, errs.TooLarge, errs.UnsupportedMediaType:
		return "invalid_request"
	case errs.Unauthenticated:
		return "unauthorized"
	case errs.Forbidden:
		return "forbidden"
	case errs.NotFound:
		return "not_found"
	case errs.Conflict:
		return "conflict"
	case errs.Throttled:
		return "too_many_requests"
	case errs.Unavailable:
		return "temporarily_unavailable"
	}
	return ""
}
