package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/posgate/posgate/client/identity"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/httpx"
)

// FuzzRouteMatch compiles two routes from fuzzed paths (which must either fail with an error or
// give a table ServeMux accepts — never a panic) and routes a fuzzed request path through it. When
// a route matches, its literal segments must equal the request's and every wildcard must hold the
// corresponding (unescaped) segment — the value the tenant binding compares.
func FuzzRouteMatch(f *testing.F) {
	f.Add("/pos/v3/locations/{location}/orders", "/v2/", "/pos/v3/locations/L1/orders")
	f.Add("/v2/stores/{store}/offers/{offer}/reserve", "/v2/stores", "/v2/stores/s%201/offers/o/reserve")
	f.Add("/files/{rest...}", "/files/{$}", "/files/a/b/c")
	f.Add("/a/{x}", "/a/b", "/a/b")
	f.Add("/x/{a}/b", "/x/a/{b}", "/x/a/b")
	f.Add("/{location}/", "/", "/L2/anything")
	f.Add("/a/%7Bx%7D", "/é/{ü}", "/%C3%A9/%C3%BC")
	f.Add("/a/{x", "/a/}", "/a/{x")
	reg := auth.NewRegistry()
	reg.Register("test.key", keyAuth{})
	hasUp := func(s string) bool { return s == "pos" }
	f.Fuzz(func(t *testing.T, p1, p2, reqPath string) {
		cfg := []config.Route{
			{Path: p1, Methods: []string{"GET"}, Auth: []string{"test.key"}, Upstream: "pos"},
			{Path: p2, Methods: []string{"GET", "POST"}, Auth: []string{"test.key"}, Upstream: "pos"},
		}
		routes, _, err := compileRoutes(cfg, reg, hasUp, []string{"pos"})
		if err != nil {
			return
		}
		type hit struct {
			rt     *route
			values map[string]string
		}
		var got *hit
		mux := http.NewServeMux()
		for _, rt := range routes {
			names, err := config.RouteWildcards(rt.path)
			if err != nil {
				t.Fatalf("compiled route %q has bad wildcards: %v", rt.path, err)
			}
			for _, pat := range rt.patterns {
				rt := rt
				mux.HandleFunc(pat, func(_ http.ResponseWriter, r *http.Request) {
					vals := map[string]string{}
					for _, n := range names {
						vals[n] = r.PathValue(n)
					}
					got = &hit{rt: rt, values: vals}
				})
			}
		}
		u, err := url.ParseRequestURI(reqPath)
		if err != nil || u.Host != "" || u.Scheme != "" || httpx.CheckPath(u.EscapedPath()) != nil {
			return
		}
		req := &http.Request{Method: "GET", URL: u, Host: "h", Header: http.Header{}, RequestURI: reqPath}
		mux.ServeHTTP(httptest.NewRecorder(), req)
		if got == nil {
			return
		}
		// Compare segment by segment with the unescaped request path.
		patSegs := strings.Split(got.rt.path[1:], "/")
		reqSegs := strings.Split(u.EscapedPath()[1:], "/")
		for i, ps := range patSegs {
			if ps == "" && i == len(patSegs)-1 {
				break // trailing slash: prefix
			}
			if ps == "{$}" {
				if i != len(reqSegs)-1 || reqSegs[i] != "" {
					t.Fatalf("%q matched %q beyond {$}", reqPath, got.rt.path)
				}
				break
			}
			if i >= len(reqSegs) {
				t.Fatalf("%q matched %q with too few segments", reqPath, got.rt.path)
			}
			seg, err := url.PathUnescape(reqSegs[i])
			if err != nil {
				t.Fatalf("matched an undecodable segment %q", reqSegs[i])
			}
			if strings.HasPrefix(ps, "{") && strings.HasSuffix(ps, "}") {
				name := strings.TrimSuffix(ps[1:len(ps)-1], "...")
				want := seg
				if strings.HasSuffix(ps, "...}") {
					rest := strings.Join(reqSegs[i:], "/")
					want, _ = url.PathUnescape(rest)
				}
				if got.values[name] != want {
					t.Fatalf("%q on %q: {%s} = %q, want %q", reqPath, got.rt.path, name, got.values[name], want)
				}
				if strings.HasSuffix(ps, "...}") {
					break
				}
				continue
			}
			lit, _ := url.PathUnescape(ps)
			if lit != seg {
				t.Fatalf("%q matched %q: segment %q vs literal %q", reqPath, got.rt.path, seg, lit)
			}
			if i == len(patSegs)-1 && len(reqSegs) != len(patSegs) {
				t.Fatalf("%q matched exact pattern %q with extra segments", reqPath, got.rt.path)
			}
		}
		// Tenant wildcards found at compile time are exactly the tenant-named wildcards.
		for _, tw := range got.rt.tenantWildcards {
			if _, ok := got.values[tw.name]; !ok {
				t.Fatalf("tenant wildcard %q not in pattern %q", tw.name, got.rt.path)
			}
		}
	})
}

// FuzzPrincipalHeader encodes a principal built from fuzzed strings, signs it as the forwarder
// does and verifies it with client/identity: the header must be header-safe, verify, and decode to
// the same principal (strings as JSON carries them: invalid UTF-8 becomes U+FFFD). Arbitrary
// header values must never crash the decoder.
func FuzzPrincipalHeader(f *testing.F) {
	f.Add("doshii", "L1", "cl_1", "notif-1", 12.5, "/pos/v3/x?y=1", "eyJkaWFsZWN0IjoieCJ9")
	f.Add("ü\x00\"\\", "\xff\xfe", "\u2028<script>", "", math.Copysign(0, -1), "/", "")
	f.Add("", "", "", "k\nv", 1e308, "/a%20b", "!!!")
	now := time.Unix(1_800_000_000, 0)
	v, _ := identity.NewVerifier(testKey)
	v.Now = func() time.Time { return now }
	f.Fuzz(func(t *testing.T, dialect, location, client, claim string, amount float64, target, junk string) {
		_, _ = identity.DecodePrincipal(junk)
		_, _, _, _ = identity.ParseSignature(junk)
		p := &auth.Principal{Dialect: dialect, Means: dialect + ".m", Location: location, Client: client,
			Scopes: []string{claim}, Claims: map[string]any{"notificationKey": claim, "amount": amount}, TokenID: "secret-jti"}
		ph, err := encodePrincipal(p)
		want, werr := json.Marshal(p)
		if (err == nil) != (werr == nil) {
			t.Fatalf("hand encoder error %v, encoding/json error %v", err, werr)
		}
		if err != nil {
			return // NaN/Inf amounts do not encode; the forwarder answers 500 then
		}
		if doc, _ := base64.RawURLEncoding.DecodeString(ph); !bytes.Equal(doc, want) {
			t.Fatalf("hand encoder differs from encoding/json:\n%s\n%s", doc, want)
		}
		for i := 0; i < len(ph); i++ {
			c := ph[i]
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				t.Fatalf("header value has %q", c)
			}
		}
		if strings.Contains(target, "\n") || !utf8.ValidString(target) {
			return
		}
		sig := identity.Sign(testKey, "POST", target, now, identity.NewNonce(), ph)
		got, err := v.VerifyValues("POST", target, ph, sig)
		if err != nil {
			if len(ph) > identity.MaxHeaderBytes {
				return
			}
			t.Fatalf("own signature does not verify: %v", err)
		}
		clean := func(s string) string { // as encoding/json does: each invalid byte becomes U+FFFD
			var b strings.Builder
			for _, r := range s {
				b.WriteRune(r)
			}
			return b.String()
		}
		if got.Dialect != clean(dialect) || got.Location != clean(location) || got.Client != clean(client) ||
			got.Claims["notificationKey"] != clean(claim) {
			t.Fatalf("round trip changed the principal: %+v", got)
		}
		if n, ok := got.Claims["amount"].(json.Number); !ok || n.String() == "" {
			t.Fatalf("amount %v", got.Claims["amount"])
		}
		if bytes.Contains([]byte(ph), []byte("secret-jti")) {
			t.Fatal("token id leaked")
		}
	})
}

// FuzzScanJSON: the body scanner accepts exactly the valid JSON documents (within the depth
// limit) and never panics; every tenant id field it reports is really a key of the document.
func FuzzScanJSON(f *testing.F) {
	f.Add([]byte(`{"locationId":"L1","items":[{"locationId":"L2"}],"price":12.5}`), "price")
	f.Add([]byte(`[{"LOCATIONID":1},{"a":{"b":[[{"outletId":null}]]}}]`), "x")
	f.Add([]byte(`{"a":1} {"b":2}`), "a")
	f.Add([]byte(`{"a":}`), "")
	f.Add([]byte(`"str"`), "")
	f.Add([]byte(`{"\u006cocationId":"L\u0032","organi\u017fationId":"o","x":[1,{"outletid":-1.5e3}],"price":"\u0031"}`), "price")
	f.Add([]byte("{\"locationId\":\"\xff\"}"), "")
	f.Fuzz(func(t *testing.T, data []byte, field string) {
		facts, err := scanJSON(data, field)
		ref, rerr := scanJSONReference(data, field)
		if (err == nil) != (rerr == nil) {
			t.Fatalf("%q: scanner error %v, reference error %v", data, err, rerr)
		}
		if err == nil && !reflect.DeepEqual(facts, ref) {
			t.Fatalf("%q: scanner %+v, reference %+v", data, facts, ref)
		}
		valid := json.Valid(data)
		if err == nil && !valid {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		if err != nil && valid && !strings.Contains(err.Error(), "nested too deeply") {
			t.Fatalf("refused valid JSON %q: %v", data, err)
		}
		if err == nil && len(facts.ids) > 0 && !bytes.Contains(bytes.ToLower(data), []byte("id")) {
			t.Fatalf("reported ids in a document without such keys: %q", data)
		}
		for _, a := range facts.amounts {
			if a.isNumber {
				_, _ = parseDecimal(a.text)
			}
		}
	})
}

type refFrame struct {
	obj     bool
	wantKey bool
	key     string
}

// scanJSONReference is the first body scanner, built on encoding/json's tokenizer: slower (an
// allocation per token) but obviously right. FuzzScanJSON checks scanJSON against it. It walks a JSON document once and collects every tenant id field (at any depth, in
// objects inside arrays too) and every top-level occurrence of amountField. Duplicate keys are
// not refused here: every occurrence is collected, and the policy checks them all, so whichever
// one the upstream's parser keeps has been checked.
func scanJSONReference(data []byte, amountField string) (bodyFacts, error) {
	var facts bodyFacts
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []refFrame
	done := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if !done {
				return facts, errors.New("the body is empty or incomplete JSON")
			}
			return facts, nil
		}
		if err != nil {
			return facts, fmt.Errorf("the body is not valid JSON: %v", err)
		}
		if done {
			return facts, errors.New("the body has data after the JSON document")
		}
		n := len(stack)
		if n > 0 && stack[n-1].obj && stack[n-1].wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:n-1]
				done = refValueDone(stack)
				continue
			}
			key, ok := tok.(string)
			if !ok {
				return facts, errors.New("the body is not valid JSON: object key is not a string")
			}
			stack[n-1].key = key
			stack[n-1].wantKey = false
			continue
		}
		// tok is a value, or the end of an array.
		if d, ok := tok.(json.Delim); ok && (d == ']' || d == '}') {
			if n == 0 {
				return facts, errors.New("the body is not valid JSON")
			}
			stack = stack[:n-1]
			done = refValueDone(stack)
			continue
		}
		if n > 0 && stack[n-1].obj {
			refRecordField(&facts, stack[n-1].key, n == 1, tok, amountField)
		}
		if d, ok := tok.(json.Delim); ok {
			if len(stack) >= maxBodyDepth {
				return facts, errors.New("the body is nested too deeply")
			}
			stack = append(stack, refFrame{obj: d == '{', wantKey: d == '{'})
			continue
		}
		done = refValueDone(stack)
	}
}

// valueDone marks the innermost container as having finished a value; it reports whether the
// whole document is complete.
func refValueDone(stack []refFrame) bool {
	if len(stack) == 0 {
		return true
	}
	if top := &stack[len(stack)-1]; top.obj {
		top.wantKey = true
	}
	return false
}

func refRecordField(f *bodyFacts, key string, topLevel bool, tok json.Token, amountField string) {
	for _, tf := range tenantIDFields {
		if strings.EqualFold(key, tf.name) {
			v := idValue{field: tf.field}
			switch x := tok.(type) {
			case string:
				v.value, v.isString = x, true
			case json.Number:
				v.value = string(x)
			}
			f.ids = append(f.ids, v)
		}
	}
	if topLevel && amountField != "" && strings.EqualFold(key, amountField) {
		a := amountValue{}
		if x, ok := tok.(json.Number); ok {
			a.text, a.isNumber = string(x), true
		}
		f.amounts = append(f.amounts, a)
	}
}

// FuzzQueryIDs: the query/form tenant-id collector never panics or loops, and finds every
// tenant id a bracket-syntax parser could see at any level of a key (a reference that splits the
// key on '[' and ']' with strings.FieldsFunc), and never one that is not there.
func FuzzQueryIDs(f *testing.F) {
	for _, s := range []string{"locationId=L1", "locationId[]=L2", "order[lines][0][LocationId]=L2", "a[=1", "[locationId]=x",
		"a]b[c]=1", "x=1&outletId=O&organisationId[a]=G", "%5B=1", "locationId[=1", "[[]]=1", "a[b]c[locationId]=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		ids, err := queryIDs(raw)
		if err != nil {
			return
		}
		vals, _ := url.ParseQuery(raw)
		want := 0
		for k, vs := range vals {
			for _, name := range strings.FieldsFunc(k, func(r rune) bool { return r == '[' || r == ']' }) {
				for _, tf := range tenantIDFields {
					if strings.EqualFold(name, tf.name) {
						want += len(vs)
					}
				}
			}
		}
		if len(ids) != want {
			t.Fatalf("%q: %d ids found, want %d", raw, len(ids), want)
		}
	})
}
