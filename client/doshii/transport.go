package doshii

import (
	"io"
	"net/http"
	"time"

	"github.com/posgate/posgate/client/tokensource"
)

// Transport authenticates venue calls for one location: each request gets a freshly signed
// location JWT in `authorization` and the vendor's API name in `vendor`. It is safe for
// concurrent use.
//
// A 401 whose Date header is more than tokensource.SkewThreshold away from the (corrected) local
// clock means this client's clock is off: the offset is kept in Skew and the request is signed
// and sent once more, when its body can be sent again (none, or req.GetBody set).
type Transport struct {
	Key           *VendorKey
	Vendor        string // the vendor's API name
	LocationToken string
	// Skew corrects the clock; share one between the Transports of one server. Nil means none.
	Skew *tokensource.Skew
	// Now is the local clock (time.Now).
	Now  func() time.Time
	Base http.RoundTripper // http.DefaultTransport when nil
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	sent := now()
	r, err := t.signed(req, sent)
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	resp, err := base.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || t.Skew == nil {
		return resp, err
	}
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return resp, nil
	}
	if !t.Skew.Learn(resp, sent) {
		return resp, nil
	}
	r, err = t.signed(req, now())
	if err != nil {
		return resp, nil
	}
	if req.GetBody != nil {
		if r.Body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return base.RoundTrip(r)
}

func (t *Transport) signed(req *http.Request, local time.Time) (*http.Request, error) {
	at := local
	if t.Skew != nil {
		at = t.Skew.Now(local)
	}
	jwt, err := t.Key.SignLocation(t.LocationToken, at)
	if err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+jwt)
	r.Header.Set("Vendor", t.Vendor)
	return r, nil
}
