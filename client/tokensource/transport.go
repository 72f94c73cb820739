package tokensource

import (
	"context"
	"errors"
	"io"
	"net/http"

	"golang.org/x/oauth2"
)

// ContextSource is a TokenSource whose wait can be bounded by a context (Source is one).
type ContextSource interface {
	TokenContext(ctx context.Context) (*oauth2.Token, error)
}

// Invalidator is a TokenSource that can be told the server refused a token (Source is one).
type Invalidator interface {
	Invalidate(tok *oauth2.Token)
}

// Transport is oauth2.Transport plus one renewal: when the server answers 401 and Source is an
// Invalidator, the token is invalidated, a new one fetched, and the request sent once more (only
// when its body can be sent again: none, or req.GetBody set, as http.NewRequest does for byte
// and string readers). A second 401 is returned as it is.
type Transport struct {
	Source oauth2.TokenSource
	Base   http.RoundTripper // http.DefaultTransport when nil
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.Source == nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errors.New("tokensource: Transport has no Source")
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	tok, err := t.token(req.Context())
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	req2 := req.Clone(req.Context())
	tok.SetAuthHeader(req2)
	resp, err := base.RoundTrip(req2)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	inv, ok := t.Source.(Invalidator)
	if !ok || (req.Body != nil && req.Body != http.NoBody && req.GetBody == nil) {
		return resp, nil
	}
	inv.Invalidate(tok)
	tok2, err := t.token(req.Context())
	if err != nil || tok2.AccessToken == tok.AccessToken {
		return resp, nil // nothing better to send: the caller sees the 401
	}
	req3 := req.Clone(req.Context())
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return resp, nil
		}
		req3.Body = body
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	tok2.SetAuthHeader(req3)
	return base.RoundTrip(req3)
}

func (t *Transport) token(ctx context.Context) (*oauth2.Token, error) {
	if cs, ok := t.Source.(ContextSource); ok {
		return cs.TokenContext(ctx)
	}
	return t.Source.Token()
}

// Client returns an *http.Client that authenticates every request with src through a Transport
// on base (http.DefaultTransport when nil).
func Client(src oauth2.TokenSource, base http.RoundTripper) *http.Client {
	return &http.Client{Transport: &Transport{Source: src, Base: base}}
}
