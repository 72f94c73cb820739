package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"mime"
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

// queryIDs collects tenant id fields from a URL query (or a form-encoded body).
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
		for _, tf := range tenantIDFields {
			if strings.EqualFold(k, tf.name) {
				for _, v := range vs {
					out = append(out, idValue{field: tf.field, value: v, isString: true})
				}
			}
		}
	}
	return out, nil
}

// bodyKind classifies a request body for the policy.
type bodyKind int

const (
	bodyOther bodyKind = iota
	bodyJSON
	bodyForm
)

// classifyBody says how a body will be read by the upstream: JSON when the Content-Type says so
// or, whatever it says, when the body starts like a JSON object or array (an upstream may parse
// it regardless of the header); a form when the Content-Type is form-urlencoded.
func classifyBody(contentType string, data []byte) bodyKind {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/json" || strings.HasSuffix(mt, "+json") {
		return bodyJSON
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		return bodyJSON
	}
	if mt == "application/x-www-form-urlencoded" {
		return bodyForm
	}
	return bodyOther
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
