package gateway

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"sync"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/jsonx"
)

// The principal header is built on every forwarded request, so it is encoded by hand: the output
// is byte for byte what encoding/json produces for auth.Principal (FuzzPrincipalHeader checks
// that), at a fraction of the cost of reflection. Claim values of types other than the common
// ones below fall back to encoding/json.

var encBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// encodePrincipal returns the X-Posgate-Principal value for p: base64url (no padding) of its JSON.
func encodePrincipal(p *auth.Principal) (string, error) {
	bp := encBufs.Get().(*[]byte)
	defer encBufs.Put(bp)
	doc, err := appendPrincipalJSON((*bp)[:0], p)
	if err != nil {
		return "", err
	}
	*bp = doc
	return base64.RawURLEncoding.EncodeToString(doc), nil
}

func appendPrincipalJSON(b []byte, p *auth.Principal) ([]byte, error) {
	b = append(b, `{"dialect":`...)
	b = jsonx.AppendString(b, p.Dialect)
	b = append(b, `,"means":`...)
	b = jsonx.AppendString(b, p.Means)
	for _, f := range [...]struct{ name, v string }{
		{`,"subject":`, p.Subject}, {`,"client":`, p.Client}, {`,"organisation":`, p.Organisation},
		{`,"location":`, p.Location}, {`,"outlet":`, p.Outlet}, {`,"device":`, p.Device}, {`,"vendor":`, p.Vendor},
	} {
		if f.v != "" {
			b = append(b, f.name...)
			b = jsonx.AppendString(b, f.v)
		}
	}
	if len(p.Scopes) > 0 {
		b = append(b, `,"scopes":[`...)
		for i, s := range p.Scopes {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonx.AppendString(b, s)
		}
		b = append(b, ']')
	}
	if len(p.Claims) > 0 {
		b = append(b, `,"claims":`...)
		var err error
		if b, err = appendClaims(b, p.Claims); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func appendClaims(b []byte, m map[string]any) ([]byte, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // encoding/json sorts map keys by their UTF-8 bytes
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonx.AppendString(b, k)
		b = append(b, ':')
		var err error
		if b, err = appendValue(b, m[k]); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func appendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return jsonx.AppendString(b, x), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case float64:
		return appendFloat(b, x, 64)
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case []string:
		if x == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, s := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonx.AppendString(b, s)
		}
		return append(b, ']'), nil
	default:
		doc, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		return append(b, doc...), nil
	}
}

// appendFloat formats like encoding/json: the shortest representation, 'f' notation unless the
// magnitude is below 1e-6 or at least 1e21, exponents without a leading zero.
func appendFloat(b []byte, f float64, bits int) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, &json.UnsupportedValueError{Str: strconv.FormatFloat(f, 'g', -1, bits)}
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (bits == 64 && (abs < 1e-6 || abs >= 1e21)) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}
