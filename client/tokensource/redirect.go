package tokensource

import "net/http"

// Redirected reports whether req is a redirect that left the host of the request the caller
// made. A RoundTripper that adds a credential itself (rather than through a header the
// http.Client strips on such a redirect, as it does Authorization) must not add it then, or a
// redirect to another host would receive the credential.
func Redirected(req *http.Request) bool {
	first := req
	for first.Response != nil && first.Response.Request != nil {
		first = first.Response.Request
	}
	return first != req && first.URL.Host != req.URL.Host
}
