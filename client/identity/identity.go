// Package identity lets an upstream API behind the posgate gateway know who made a request.
//
// The gateway authenticates the caller (whatever its dialect), strips the caller's credential and
// adds two headers to the request it forwards:
//
//	X-Posgate-Principal: base64url(JSON of the principal), no padding
//	X-Posgate-Signature: t=<unix seconds>,n=<nonce>,v1=<base64url HMAC-SHA256>, no padding
//
// The HMAC key is the gateway's signing secret (config key gateway.signing_secret). The signed
// string is, with "\n" between the parts:
//
//	posgate-identity-v1
//	<METHOD>
//	<request target as sent: escaped path, plus "?" and the raw query when there is one>
//	<t>
//	<n>
//	<the X-Posgate-Principal header value exactly as received>
//
// So the signature binds the identity to the method, the path and query, and a time; an upstream
// that accepts only fresh timestamps (Verifier.MaxSkew) and, optionally, each nonce once
// (Verifier.Replay) cannot be fed an identity header lifted from another request. It does not cover
// the body: protect the link between the gateway and the upstream (loopback, a private network or
// TLS) as you would for any reverse proxy.
//
// An upstream written in Go wraps its handler with Verifier.Middleware and reads the principal with
// FromContext. Any other language can implement the few lines above; docs/gateway.md has an example.
package identity

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Header names.
const (
	HeaderPrincipal = "X-Posgate-Principal"
	HeaderSignature = "X-Posgate-Signature"
)

// MinKeyBytes is the shortest HMAC key accepted on either side.
const MinKeyBytes = 32

// MaxHeaderBytes caps the principal header before it is decoded.
const MaxHeaderBytes = 16 << 10

// DefaultMaxSkew is how far the signature's timestamp may be from the verifier's clock.
const DefaultMaxSkew = 60 * time.Second

const version = "posgate-identity-v1"

// Principal is who made a request, as the gateway saw it. Fields absent for a dialect are empty.
type Principal struct {
	Dialect string `json:"dialect"`           // "chimpy", "jackpot", "doshii", "chef", "posgate"
	Means   string `json:"means"`             // the authenticator that accepted the credential, e.g. "jackpot.session"
	Subject string `json:"subject,omitempty"` // user id, device id, location id, client id…
	Client  string `json:"client,omitempty"`  // posgate's internal client id (never an API key)

	Organisation string `json:"organisation,omitempty"`
	Location     string `json:"location,omitempty"`
	Outlet       string `json:"outlet,omitempty"`
	Device       string `json:"device,omitempty"`
	Vendor       string `json:"vendor,omitempty"`

	Scopes []string       `json:"scopes,omitempty"`
	Claims map[string]any `json:"claims,omitempty"` // dialect claims (jackpot amount, notificationKey…); numbers decode as json.Number
}

// HasScope reports whether p was granted scope s.
func (p *Principal) HasScope(s string) bool {
	for _, x := range p.Scopes {
		if x == s {
			return true
		}
	}
	return false
}

// EncodePrincipal returns the X-Posgate-Principal header value for the JSON document doc (a JSON
// object; the gateway passes the marshalled principal).
func EncodePrincipal(doc []byte) string {
	return base64.RawURLEncoding.EncodeToString(doc)
}

// DecodePrincipal parses an X-Posgate-Principal header value. It does not check any signature:
// use Verifier.Verify for that.
func DecodePrincipal(value string) (*Principal, error) {
	if len(value) > MaxHeaderBytes {
		return nil, errors.New("identity: principal header too large")
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(value)
	if err != nil {
		return nil, fmt.Errorf("identity: principal header is not base64url: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var p Principal
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("identity: principal header is not a JSON object: %w", err)
	}
	if dec.More() {
		return nil, errors.New("identity: principal header has data after the object")
	}
	return &p, nil
}

// NewNonce returns a fresh random nonce (96 bits, base64url).
func NewNonce() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Signer signs requests with one key; it is what the gateway uses on every forwarded request:
// HMAC states and buffers are pooled, and nonces are a random per-Signer prefix plus a counter —
// unique without a system call per request (a nonce must be unique, not secret: the MAC covers it).
type Signer struct {
	pool   sync.Pool
	prefix [10]byte
	n      atomic.Uint64
}

type signState struct {
	h   hash.Hash
	msg []byte
	sum []byte
	out []byte
}

// NewSigner returns a Signer for key (at least MinKeyBytes long).
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("identity: key is %d bytes; at least %d are required", len(key), MinKeyBytes)
	}
	k := append([]byte(nil), key...)
	s := &Signer{}
	s.pool.New = func() any {
		return &signState{h: hmac.New(sha256.New, k), msg: make([]byte, 0, 1024), sum: make([]byte, 0, sha256.Size), out: make([]byte, 0, 128)}
	}
	if _, err := rand.Read(s.prefix[:]); err != nil {
		return nil, err
	}
	return s, nil
}

// appendNonce appends a nonce never produced before by this Signer (128 bits: 80 random, 48
// counter; base64url).
func (s *Signer) appendNonce(b []byte) []byte {
	var raw [16]byte
	copy(raw[:10], s.prefix[:])
	n := s.n.Add(1)
	for i := 0; i < 6; i++ {
		raw[15-i] = byte(n >> (8 * i))
	}
	return base64.RawURLEncoding.AppendEncode(b, raw[:])
}

// Sign returns the X-Posgate-Signature value for a request, with a fresh nonce (see the package
// Sign).
func (s *Signer) Sign(method, target string, t time.Time, principal string) string {
	st := s.pool.Get().(*signState)
	defer s.pool.Put(st)
	var tsb [24]byte
	ts := strconv.AppendInt(tsb[:0], t.Unix(), 10)
	var nb [24]byte
	nonce := s.appendNonce(nb[:0])
	st.msg = appendSigned(st.msg[:0], method, target, ts, nonce, principal)
	st.h.Reset()
	st.h.Write(st.msg)
	st.sum = st.h.Sum(st.sum[:0])
	st.out = appendSignature(st.out[:0], ts, nonce, st.sum)
	return string(st.out)
}

// Sign returns the X-Posgate-Signature header value for a request. target is the request target
// as sent on the wire (escaped path, "?" and raw query when present); principal is the
// X-Posgate-Principal header value. Servers signing many requests use a Signer.
func Sign(key []byte, method, target string, t time.Time, nonce, principal string) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return string(appendSignature(nil, []byte(ts), []byte(nonce), mac(key, method, target, ts, nonce, principal)))
}

func appendSignature(b, ts, nonce, mac []byte) []byte {
	b = append(b, "t="...)
	b = append(b, ts...)
	b = append(b, ",n="...)
	b = append(b, nonce...)
	b = append(b, ",v1="...)
	return base64.RawURLEncoding.AppendEncode(b, mac)
}

func mac(key []byte, method, target, ts, nonce, principal string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(appendSigned(nil, method, target, []byte(ts), []byte(nonce), principal))
	return h.Sum(nil)
}

// appendSigned appends the signed string: one part per line. Parts cannot contain "\n": method
// and target are checked by the HTTP layer, ts and nonce are ours, principal is base64url.
func appendSigned(b []byte, method, target string, ts, nonce []byte, principal string) []byte {
	b = append(b, version...)
	b = append(b, '\n')
	b = append(b, method...)
	b = append(b, '\n')
	b = append(b, target...)
	b = append(b, '\n')
	b = append(b, ts...)
	b = append(b, '\n')
	b = append(b, nonce...)
	b = append(b, '\n')
	return append(b, principal...)
}

// Errors returned by Verify (wrapped with detail).
var (
	ErrMissing   = errors.New("identity: X-Posgate-Principal or X-Posgate-Signature missing")
	ErrMalformed = errors.New("identity: malformed signature header")
	ErrStale     = errors.New("identity: signature timestamp outside the allowed window")
	ErrSignature = errors.New("identity: signature does not verify")
	ErrReplayed  = errors.New("identity: nonce seen before")
)

// ReplayChecker remembers nonces. Seen reports whether nonce was seen before and records it until
// `until` (the end of the acceptance window).
type ReplayChecker interface {
	Seen(nonce string, until time.Time) bool
}

// Verifier checks the identity headers of requests that come from the gateway.
type Verifier struct {
	keys [][]byte
	// MaxSkew is how far the signature time may be from Now, either way (default 60 s).
	MaxSkew time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Replay, when set, refuses a nonce seen before within the window.
	Replay ReplayChecker
}

// NewVerifier returns a verifier that accepts signatures made with any of keys (several during a
// rotation of the gateway's signing secret). Keys shorter than MinKeyBytes are refused.
func NewVerifier(keys ...[]byte) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("identity: no key")
	}
	v := &Verifier{MaxSkew: DefaultMaxSkew, Now: time.Now}
	for i, k := range keys {
		if len(k) < MinKeyBytes {
			return nil, fmt.Errorf("identity: key %d is %d bytes; at least %d are required", i, len(k), MinKeyBytes)
		}
		v.keys = append(v.keys, append([]byte(nil), k...))
	}
	return v, nil
}

// NewVerifierBase64 is NewVerifier for keys given in base64 (standard or URL alphabet, padding
// optional), as in the gateway's config.
func NewVerifierBase64(keys ...string) (*Verifier, error) {
	var raw [][]byte
	for i, k := range keys {
		b, err := DecodeKey(k)
		if err != nil {
			return nil, fmt.Errorf("identity: key %d: %w", i, err)
		}
		raw = append(raw, b)
	}
	return NewVerifier(raw...)
}

// DecodeKey decodes a base64 key (standard or URL alphabet, padding optional).
func DecodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimRight(s, "=")
	s = strings.NewReplacer("+", "-", "/", "_").Replace(s)
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("not valid base64")
	}
	return b, nil
}

// Verify checks r's identity headers and returns the principal. The request target is
// r.RequestURI as received (what the gateway signed), or r.URL.RequestURI() when it is empty.
func (v *Verifier) Verify(r *http.Request) (*Principal, error) {
	target := r.RequestURI
	if target == "" {
		target = r.URL.RequestURI()
	}
	pv := r.Header.Values(HeaderPrincipal)
	sv := r.Header.Values(HeaderSignature)
	if len(pv) != 1 || len(sv) != 1 {
		if len(pv) > 1 || len(sv) > 1 {
			return nil, fmt.Errorf("%w: header repeated", ErrMalformed)
		}
		return nil, ErrMissing
	}
	return v.VerifyValues(r.Method, target, pv[0], sv[0])
}

// VerifyValues checks the two header values for a request with that method and target.
func (v *Verifier) VerifyValues(method, target, principal, signature string) (*Principal, error) {
	if principal == "" || signature == "" {
		return nil, ErrMissing
	}
	if len(principal) > MaxHeaderBytes || len(signature) > 256 {
		return nil, fmt.Errorf("%w: header too large", ErrMalformed)
	}
	ts, nonce, sig, err := ParseSignature(signature)
	if err != nil {
		return nil, err
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	skew := v.MaxSkew
	if skew <= 0 {
		skew = DefaultMaxSkew
	}
	t := time.Unix(ts, 0)
	n := now()
	if t.Before(n.Add(-skew)) || t.After(n.Add(skew)) {
		return nil, ErrStale
	}
	ok := false
	for _, k := range v.keys {
		want := mac(k, method, target, strconv.FormatInt(ts, 10), nonce, principal)
		if hmac.Equal(want, sig) {
			ok = true
		}
	}
	if !ok {
		return nil, ErrSignature
	}
	if v.Replay != nil && v.Replay.Seen(nonce, t.Add(skew)) {
		return nil, ErrReplayed
	}
	return DecodePrincipal(principal)
}

// ParseSignature splits an X-Posgate-Signature value into its timestamp, nonce and MAC. Each of
// t, n and v1 must appear exactly once, in any order; nothing else is allowed.
func ParseSignature(s string) (ts int64, nonce string, sig []byte, err error) {
	var haveT, haveN, haveV bool
	for part := range strings.SplitSeq(s, ",") {
		k, val, ok := strings.Cut(part, "=")
		if !ok || val == "" {
			return 0, "", nil, ErrMalformed
		}
		switch k {
		case "t":
			if haveT || len(val) > 19 {
				return 0, "", nil, ErrMalformed
			}
			for _, c := range val {
				if c < '0' || c > '9' {
					return 0, "", nil, ErrMalformed
				}
			}
			ts, err = strconv.ParseInt(val, 10, 64)
			if err != nil {
				return 0, "", nil, ErrMalformed
			}
			haveT = true
		case "n":
			if haveN || len(val) > 64 {
				return 0, "", nil, ErrMalformed
			}
			for _, c := range val {
				if !isB64URL(c) {
					return 0, "", nil, ErrMalformed
				}
			}
			nonce = val
			haveN = true
		case "v1":
			if haveV {
				return 0, "", nil, ErrMalformed
			}
			sig, err = base64.RawURLEncoding.Strict().DecodeString(val)
			if err != nil || len(sig) != sha256.Size {
				return 0, "", nil, ErrMalformed
			}
			haveV = true
		default:
			return 0, "", nil, ErrMalformed
		}
	}
	if !haveT || !haveN || !haveV {
		return 0, "", nil, ErrMalformed
	}
	return ts, nonce, sig, nil
}

func isB64URL(c rune) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

type ctxKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal Middleware attached to ctx.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(*Principal)
	return p, ok && p != nil
}

// Middleware verifies every request's identity headers and passes the principal to next in the
// request context; a request without valid headers gets 401 and a JSON error, and never reaches
// next.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := v.Verify(r)
		if err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"unauthenticated","error_description":"request did not come through the posgate gateway"}` + "\n"))
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), p)))
	})
}

// MemoryReplayCache is a bounded in-memory ReplayChecker for one upstream process. When full it
// drops expired nonces; if none have expired it refuses new ones (fails closed) rather than
// forgetting a live one.
type MemoryReplayCache struct {
	mu   sync.Mutex
	max  int
	now  func() time.Time
	seen map[string]time.Time
}

// NewMemoryReplayCache remembers at most max nonces (default 1,000,000 when max <= 0).
func NewMemoryReplayCache(max int) *MemoryReplayCache {
	if max <= 0 {
		max = 1_000_000
	}
	return &MemoryReplayCache{max: max, now: time.Now, seen: map[string]time.Time{}}
}

// Seen implements ReplayChecker.
func (c *MemoryReplayCache) Seen(nonce string, until time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if exp, ok := c.seen[nonce]; ok && exp.After(now) {
		return true
	}
	if len(c.seen) >= c.max {
		for k, exp := range c.seen {
			if !exp.After(now) {
				delete(c.seen, k)
			}
		}
		if len(c.seen) >= c.max {
			return true // full of live nonces: refuse rather than forget one
		}
	}
	c.seen[nonce] = until
	return false
}
