package gateway

import (
	"encoding/json"
	"errors"
	"math/big"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/posgate/posgate/internal/errs"
)

// tenantIDFields are the body (and query) fields that name a tenant, and the principal field each
// is bound to. Names are matched with Unicode case folding (strings.EqualFold), a superset of how
// encoding/json and most frameworks match field names, so "LocationID" or "locationid" cannot
// slip past the check and still be read by the upstream.
var tenantIDFields = [...]struct{ name, field string }{
	{"locationId", "location"},
	{"outletId", "outlet"},
	{"organisationId", "organisation"},
}

// maxBodyDepth bounds nesting when scanning a JSON body.
const maxBodyDepth = 64

// idValue is one occurrence of a tenant id field.
type idValue struct {
	field    string // "location", "outlet", "organisation"
	value    string // the string value, or the number's text
	isString bool
}

// amountValue is one top-level occurrence of the route's amount field.
type amountValue struct {
	text     string // number text when isNumber
	isNumber bool
}

// bodyFacts is what the policy needs from a JSON body.
type bodyFacts struct {
	ids     []idValue
	amounts []amountValue
}

// queryIDs collects tenant id fields from a URL query (or a form-encoded body). A key is matched
// by each name in it between '[' and ']': the bracket syntax that PHP, Rails/Rack, qs and others
// expand into nested fields ("locationId[]", "order[lines][0][locationId]", Rack even reads
// "locationId]" as locationId) — as a JSON body is checked at any depth.
func queryIDs(raw string) ([]idValue, error) {
	if raw == "" {
		return nil, nil
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return nil, err
	}
	var out []idValue
	for k, vs := range vals {
		for rest := k; rest != ""; {
			name := rest
			if i := strings.IndexAny(rest, "[]"); i >= 0 {
				name, rest = rest[:i], rest[i+1:]
			} else {
				rest = ""
			}
			for _, tf := range tenantIDFields {
				if strings.EqualFold(name, tf.name) {
					for _, v := range vs {
						out = append(out, idValue{field: tf.field, value: v, isString: true})
					}
				}
			}
		}
	}
	return out, nil
}

// bodyKind is how the policy reads a body it must check.
type bodyKind int

const (
	bodyJSON bodyKind = iota + 1
	bodyForm
)

// utf8BOM starts a body some parsers skip and others refuse: a BOM-prefixed body is refused, so
// that what the gateway checked is what every upstream parser reads.
const utf8BOM = "\xef\xbb\xbf"

// checkedBodyKind says, from the request's headers, how the policy reads a body it must check
// (the principal is bound to a tenant, or the route caps an amount): JSON for application/json or
// any +json type in UTF-8, a form for application/x-www-form-urlencoded when formOK. Every other
// body is refused (415), never forwarded unchecked: an upstream may well read multipart,
// text/plain or an unlabelled body as JSON or a form, and find in it the tenant id or amount the
// gateway did not see. So is a compressed body (415: the gateway does not decompress to check),
// and a repeated Content-Type (400: parsers disagree on which one counts).
func checkedBodyKind(h http.Header, formOK bool) (bodyKind, error) {
	want := "application/json"
	if formOK {
		want = "application/json or application/x-www-form-urlencoded"
	}
	unsupported := func(why string) error {
		return errs.New(errs.UnsupportedMediaType, "unsupported_media_type", why+"; this route reads "+want+" (UTF-8, uncompressed)")
	}
	for _, v := range h.Values("Content-Encoding") {
		for _, c := range strings.Split(v, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return 0, unsupported("the body is compressed (Content-Encoding)")
			}
		}
	}
	cts := h.Values("Content-Type")
	switch {
	case len(cts) == 0:
		return 0, unsupported("the body has no Content-Type")
	case len(cts) > 1:
		return 0, errs.New(errs.BadInput, "invalid_request", "the request has more than one Content-Type")
	}
	mt, params, err := mime.ParseMediaType(cts[0])
	if err != nil {
		return 0, unsupported("the Content-Type is malformed")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return 0, unsupported("the body's charset is not UTF-8")
	}
	switch {
	case mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"):
		return bodyJSON, nil
	case mt == "application/x-www-form-urlencoded" && formOK:
		return bodyForm, nil
	}
	return 0, unsupported("the body is " + mt)
}

// maxAmountText bounds the length of a number compared against an amount (and the exponent below
// bounds its magnitude), so a hostile "1e999999999" cannot make big.Rat allocate gigabytes.
const (
	maxAmountText     = 64
	maxAmountExponent = 400
)

// parseDecimal parses a JSON number (or a decimal string) exactly.
func parseDecimal(s string) (*big.Rat, error) {
	if s == "" || len(s) > maxAmountText {
		return nil, errors.New("number out of range")
	}
	mant, exp, hasExp := strings.Cut(strings.ToLower(s), "e")
	if hasExp {
		e, err := strconv.Atoi(exp)
		if err != nil || e > maxAmountExponent || e < -maxAmountExponent {
			return nil, errors.New("number out of range")
		}
	}
	for i := 0; i < len(mant); i++ {
		c := mant[i]
		if !(c >= '0' && c <= '9' || c == '.' || c == '-' && i == 0 || c == '+' && i == 0) {
			return nil, errors.New("not a number")
		}
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, errors.New("not a number")
	}
	return r, nil
}

// claimAmount reads the principal's `amount` claim exactly. A float64 (as JSON decoders produce)
// is read through its shortest decimal form, so 10.1 means 10.1 and not the nearest binary value.
func claimAmount(v any) (*big.Rat, bool) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = string(x)
	case float64:
		s = strconv.FormatFloat(x, 'g', -1, 64)
	case float32:
		s = strconv.FormatFloat(float64(x), 'g', -1, 32)
	case int:
		s = strconv.Itoa(x)
	case int64:
		s = strconv.FormatInt(x, 10)
	case uint64:
		s = strconv.FormatUint(x, 10)
	case string:
		s = x
	default:
		return nil, false
	}
	r, err := parseDecimal(s)
	return r, err == nil
}

func errInvalidBody(msg string) error {
	return errs.New(errs.BadInput, "invalid_body", msg)
}
