package oauth

import (
	"slices"
	"strings"
)

// ScopeOfflineAccess in a password grant's scope asks for a refresh token (Auth0, OIDC).
const ScopeOfflineAccess = "offline_access"

// parseScope splits a scope parameter (RFC 6749 §3.3: scope-tokens of NQCHAR separated by spaces)
// into distinct tokens in the order given. Runs of spaces are tolerated; any other character
// outside NQCHAR makes the parameter invalid.
func parseScope(s string) ([]string, error) {
	var out []string
	for _, tok := range strings.Split(s, " ") {
		if tok == "" {
			continue
		}
		for i := 0; i < len(tok); i++ {
			c := tok[i]
			if c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
				return nil, invalidRequest("scope contains invalid characters")
			}
		}
		if !slices.Contains(out, tok) {
			out = append(out, tok)
		}
	}
	return out, nil
}

// joinScope is the inverse of parseScope.
func joinScope(s []string) string { return strings.Join(s, " ") }

// without returns s without the element x.
func without(s []string, x string) []string {
	out := make([]string, 0, len(s))
	for _, v := range s {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}

// grantScope decides the scope of a grant. requested is the scope parameter (already parsed);
// allowed is what the client (or, for a refresh, the family) may have. With no request, every
// allowed scope except offline_access is granted (RFC 6749 §3.3 lets the server pick a default).
// offline_access is granted only when offlineOK; otherwise it is dropped, and the response's scope
// shows the client it was not granted (RFC 6749 §5.1). Any other scope not allowed is refused with
// access_denied, as Auth0 answers.
func grantScope(requested, allowed []string, offlineOK bool) ([]string, error) {
	if len(requested) == 0 {
		return without(allowed, ScopeOfflineAccess), nil
	}
	out := make([]string, 0, len(requested))
	for _, s := range requested {
		if s == ScopeOfflineAccess {
			if offlineOK {
				out = append(out, s)
			}
			continue
		}
		if !slices.Contains(allowed, s) {
			return nil, Fail(CodeAccessDenied, "the client may not be granted the scope "+s)
		}
		out = append(out, s)
	}
	return out, nil
}
