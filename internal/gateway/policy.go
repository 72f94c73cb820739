package gateway

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/jsonx"
)

// policy applies a route's rules to an authenticated principal: audience, scopes, local
// consumption, consumability, rate limit, tenant binding and amount cap. It may read the body
// (and puts it back for the proxy) but writes no answer and never touches the store, so every
// refusal it returns leaves nothing changed.
type policy struct {
	clock    clock.Clock
	limiters *limiters
	maxBody  int64
	consumed consumedTokens
}

// consumedTokens reports the tokens consumed through this replica, refused on every route.
type consumedTokens interface {
	has(jti string, now time.Time) bool
}

// authorize applies the route's policy to p. On refusal it returns the outcome label and the
// error to render; nothing has been forwarded.
func (pol *policy) authorize(r *http.Request, rt *route, p *auth.Principal) (string, error) {
	if aud := rt.cfg.Audience; aud != "" && !hasAudience(p.Claims["aud"], aud) {
		return outcomeAudience, errs.New(errs.Unauthenticated, "invalid_token", "the access token is not valid for this API (audience)")
	}
	if missing := missingScopes(p, rt.scopes); missing {
		return outcomeScope, &errs.Error{Kind: errs.Forbidden, Code: "insufficient_scope",
			Message: "the access token lacks a required scope: " + strings.Join(rt.scopes, " "),
			Err:     &ScopeError{Required: rt.scopes}}
	}
	if p.TokenID != "" && pol.consumed.has(p.TokenID, pol.clock.Now()) {
		return outcomeConsumed, errs.New(errs.Unauthenticated, "invalid_token", "the token has already been used")
	}
	if rt.cfg.Consume && p.TokenID == "" {
		return outcomeNotConsumable, errs.New(errs.Forbidden, "not_consumable", "this route needs a single-use token; this credential cannot be consumed")
	}
	if rt.limit > 0 {
		ok, wait := pol.limiters.allow(limiterKey(rt, p), rt.limit, rt.burst, pol.clock.Now())
		if !ok {
			return outcomeRateLimited, &errs.Error{Kind: errs.Throttled, Code: "rate_limited",
				Message: "too many requests; slow down", RetryAfter: wait}
		}
	}
	if err := pol.checkTenant(r, rt, p); err != nil {
		if errs.KindOf(err) == errs.Forbidden {
			return outcomeTenant, err
		}
		return outcomeBadRequest, err
	}
	if rt.cfg.MaxAmountField != "" || bound(p) {
		if outcome, err := pol.checkBody(r, rt, p); err != nil {
			return outcome, err
		}
	}
	return "", nil
}

func missingScopes(p *auth.Principal, need []string) bool {
	for _, s := range need {
		if !p.HasScope(s) {
			return true
		}
	}
	return false
}

// hasAudience reports whether a token's aud claim (a string or a list) contains want.
func hasAudience(aud any, want string) bool {
	switch v := aud.(type) {
	case string:
		return v == want
	case []string:
		return slices.Contains(v, want)
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok && s == want {
				return true
			}
		}
	}
	return false
}

// bound reports whether p is bound to a tenant (only bound principals are restricted by the
// tenant rules; a platform client with no tenant may name any).
func bound(p *auth.Principal) bool {
	return p.Location != "" || p.Outlet != "" || p.Organisation != ""
}

func tenantOf(p *auth.Principal, field string) string {
	switch field {
	case "location":
		return p.Location
	case "outlet":
		return p.Outlet
	case "organisation":
		return p.Organisation
	}
	return ""
}

func errTenant(field string) error {
	return errs.New(errs.Forbidden, "tenant_mismatch", "the request names another "+field+" than the credential's")
}

// checkTenant applies the tenant binding to the path, the headers and the query.
func (pol *policy) checkTenant(r *http.Request, rt *route, p *auth.Principal) error {
	if !bound(p) {
		return nil
	}
	for _, tw := range rt.tenantWildcards {
		if want := tenantOf(p, tw.field); want != "" && r.PathValue(tw.name) != want {
			return errTenant(tw.field)
		}
	}
	for _, h := range rt.tenantHeaders {
		vals := r.Header.Values(h)
		if len(vals) == 0 {
			continue
		}
		// doshii-location-id names a location; a route's own tenant_header names whichever tenant
		// the principal is bound to (location first, then outlet, then organisation).
		field := "location"
		if h != DoshiiLocationHeader {
			switch {
			case p.Location != "":
			case p.Outlet != "":
				field = "outlet"
			default:
				field = "organisation"
			}
		}
		want := tenantOf(p, field)
		if want == "" {
			continue
		}
		for _, v := range vals {
			if strings.TrimSpace(v) != want {
				return errTenant(field)
			}
		}
	}
	if r.URL.RawQuery != "" {
		ids, err := queryIDs(r.URL.RawQuery)
		if err != nil {
			return errs.New(errs.BadInput, "invalid_request", "the query string is malformed")
		}
		if err := checkIDs(ids, p); err != nil {
			return err
		}
	}
	return nil
}

func checkIDs(ids []idValue, p *auth.Principal) error {
	for _, id := range ids {
		want := tenantOf(p, id.field)
		if want == "" {
			continue
		}
		if !id.isString || id.value != want {
			return errTenant(id.field)
		}
	}
	return nil
}

// checkBody reads the body (bounded), checks tenant ids and the amount cap, and puts the body
// back for the proxy. A body it cannot check is refused, never forwarded unchecked: see
// checkedBodyKind (415), over the limit (413), starting with a byte-order mark (400), and on an
// amount route any JSON with a repeated key, compared as jsonx does (400).
func (pol *policy) checkBody(r *http.Request, rt *route, p *auth.Principal) (string, error) {
	amountField := rt.cfg.MaxAmountField
	kind, kindErr := checkedBodyKind(r.Header, amountField == "")
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	if hasBody && r.ContentLength > 0 && kindErr != nil {
		return outcomeBadRequest, kindErr // nothing read that could not be checked
	}
	var data []byte
	if hasBody {
		var err error
		data, err = httpx.ReadBody(r, pol.maxBody)
		if err != nil {
			if errs.CodeOf(err) == "body_too_large" {
				return outcomeBadRequest, errs.New(errs.TooLarge, "body_too_large",
					fmt.Sprintf("the request body is over %d bytes", pol.maxBody))
			}
			return outcomeBadRequest, err
		}
		_ = r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(data))
		r.ContentLength = int64(len(data))
		r.Header.Del("Transfer-Encoding")
		r.TransferEncoding = nil
	}
	var facts bodyFacts
	if len(data) > 0 {
		if kindErr != nil {
			return outcomeBadRequest, kindErr
		}
		if bytes.HasPrefix(data, []byte(utf8BOM)) {
			return outcomeBadRequest, errInvalidBody("the body starts with a byte-order mark")
		}
		switch kind {
		case bodyJSON:
			if amountField != "" {
				// Whichever of repeated keys an upstream's parser keeps (the first, the last, a
				// case variant), it must be the one checked: none may repeat.
				if err := jsonx.CheckObject(data); err != nil {
					return outcomeBadRequest, errInvalidBody("the body must be one JSON object without repeated keys: " + err.Error())
				}
			}
			var err error
			facts, err = scanJSON(data, amountField)
			if err != nil {
				return outcomeBadRequest, errInvalidBody(err.Error())
			}
		case bodyForm:
			ids, err := queryIDs(string(data))
			if err != nil {
				return outcomeBadRequest, errInvalidBody("the form body is malformed")
			}
			facts.ids = ids
		}
	}
	if err := checkIDs(facts.ids, p); err != nil {
		return outcomeTenant, err
	}
	if f := rt.cfg.MaxAmountField; f != "" {
		if len(data) == 0 {
			return outcomeBadRequest, errInvalidBody(fmt.Sprintf("the body must be a JSON object with a numeric %q", f))
		}
		if len(facts.amounts) == 0 {
			return outcomeBadRequest, errInvalidBody(fmt.Sprintf("the body must carry a numeric %q", f))
		}
		limit, ok := claimAmount(p.Claims["amount"])
		if !ok {
			return outcomeAmount, errs.New(errs.Forbidden, "amount_exceeded", "this credential carries no amount to spend")
		}
		for _, a := range facts.amounts {
			if !a.isNumber {
				return outcomeBadRequest, errInvalidBody(fmt.Sprintf("%q must be a number", f))
			}
			v, err := parseDecimal(a.text)
			if err != nil {
				return outcomeBadRequest, errInvalidBody(fmt.Sprintf("%q is out of range", f))
			}
			if v.Cmp(limit) > 0 {
				return outcomeAmount, errs.New(errs.Forbidden, "amount_exceeded",
					fmt.Sprintf("%q exceeds the amount this credential may spend", f))
			}
		}
	}
	return "", nil
}

// limiterKey identifies a principal on a route. Tenant ids are part of it so that two locations
// sharing a vendor key get separate buckets.
func limiterKey(rt *route, p *auth.Principal) string {
	var b strings.Builder
	b.Grow(64)
	b.WriteString(strconv.Itoa(rt.index))
	for _, s := range [...]string{p.Means, p.Client, p.Subject, p.Organisation, p.Location, p.Outlet, p.Device, p.Vendor} {
		b.WriteByte(0)
		b.WriteString(s)
	}
	return b.String()
}
