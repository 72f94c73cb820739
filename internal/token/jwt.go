package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/jsonx"
)

// b64 is strict unpadded base64url: padding is refused and so are non-zero trailing bits, so
// every byte string has exactly one accepted encoding. (Go's decoder still skips CR and LF, so
// decodeSegment checks the alphabet first.)
var b64 = base64.RawURLEncoding.Strict()

func verr(r Reason, format string, args ...any) *VerifyError {
	return &VerifyError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// SplitJWT is the front door every JWT verifier in posgate goes through: it caps the length
// (before anything else is looked at), splits the compact serialisation into exactly three
// segments, and decodes each with strict base64url. It does not parse JSON or check anything
// cryptographic. signingInput is the part the signature covers ("<header>.<payload>").
//
// Failures: ReasonMalformed (empty token, not three segments, empty header or payload segment),
// ReasonTooLarge (over MaxTokenBytes), ReasonJSON (a segment is not canonical base64url).
func SplitJWT(raw string) (header, payload, sig []byte, signingInput string, err error) {
	h, p, s, si, verr := splitJWT(raw)
	if verr != nil {
		return nil, nil, nil, "", verr
	}
	return h, p, s, si, nil
}

// splitJWT is SplitJWT with a concrete error type (no nil-interface trap for internal callers).
func splitJWT(raw string) (header, payload, sig []byte, signingInput string, err *VerifyError) {
	h, p, sg, err := splitSegments(raw)
	if err != nil {
		return nil, nil, nil, "", err
	}
	if header, err = decodeHeaderSegment(h); err != nil {
		return nil, nil, nil, "", err
	}
	if payload, sig, err = decodeBody(p, sg); err != nil {
		return nil, nil, nil, "", err
	}
	return header, payload, sig, raw[:len(h)+1+len(p)], nil
}

// splitSegments applies the length cap and splits raw into exactly three segments, the first two
// non-empty.
func splitSegments(raw string) (header, payload, sig string, err *VerifyError) {
	if raw == "" {
		return "", "", "", verr(ReasonMalformed, "empty token")
	}
	if len(raw) > MaxTokenBytes {
		return "", "", "", verr(ReasonTooLarge, "token longer than %d bytes", MaxTokenBytes)
	}
	i := strings.IndexByte(raw, '.')
	if i < 0 {
		return "", "", "", verr(ReasonMalformed, "token has 1 segment, want 3")
	}
	j := strings.IndexByte(raw[i+1:], '.')
	if j < 0 {
		return "", "", "", verr(ReasonMalformed, "token has 2 segments, want 3")
	}
	j += i + 1
	if n := strings.Count(raw[j+1:], "."); n > 0 {
		return "", "", "", verr(ReasonMalformed, "token has %d segments, want 3", n+3)
	}
	if i == 0 || j == i+1 {
		return "", "", "", verr(ReasonMalformed, "token has an empty header or payload segment")
	}
	return raw[:i], raw[i+1 : j], raw[j+1:], nil
}

func decodeHeaderSegment(h string) ([]byte, *VerifyError) {
	header, e := decodeSegment(h)
	if e != nil {
		return nil, &VerifyError{Reason: ReasonJSON, Detail: "header: " + e.Error(), Err: e}
	}
	if !utf8.Valid(header) {
		return nil, verr(ReasonJSON, "header is not valid UTF-8")
	}
	return header, nil
}

func decodeBody(p, sg string) (payload, sig []byte, err *VerifyError) {
	payload, e := decodeSegment(p)
	if e != nil {
		return nil, nil, &VerifyError{Reason: ReasonJSON, Detail: "payload: " + e.Error(), Err: e}
	}
	// RFC 8259 §8.1: JSON is UTF-8. encoding/json would turn invalid bytes into U+FFFD, so two
	// different payloads could decode to the same claims; refuse them instead.
	if !utf8.Valid(payload) {
		return nil, nil, verr(ReasonJSON, "payload is not valid UTF-8")
	}
	if sig, e = decodeSegment(sg); e != nil {
		return nil, nil, &VerifyError{Reason: ReasonJSON, Detail: "signature: " + e.Error(), Err: e}
	}
	return payload, sig, nil
}

var errBase64 = errors.New("not canonical unpadded base64url")

// decodeSegment decodes one segment strictly: only the base64url alphabet (no padding, no white
// space), canonical trailing bits.
func decodeSegment(s string) ([]byte, error) {
	for k := 0; k < len(s); k++ {
		c := s[k]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return nil, errBase64
		}
	}
	out := make([]byte, b64.DecodedLen(len(s)))
	n, err := b64.Decode(out, []byte(s))
	if err != nil {
		return nil, errBase64
	}
	return out[:n], nil
}

// headerMemo remembers parsed headers by their exact base64url segment. Parsing is a pure
// function of those bytes, so a remembered result is the result parsing would give again; only
// headers of tokens whose signature verified are put in, so only parties holding a key can add
// entries. Nearly all tokens of one issuer share one of a handful of headers, which makes the
// header's JSON checks free after the first token. Bounded: it starts over when full.
type headerMemo struct {
	m sync.Map // string → joseHeader
	n atomic.Int32
}

// maxKnownHeaders bounds a headerMemo.
const maxKnownHeaders = 64

func (hm *headerMemo) get(seg string) (joseHeader, bool) {
	if h, ok := hm.m.Load(seg); ok {
		return h.(joseHeader), true
	}
	return joseHeader{}, false
}

func (hm *headerMemo) put(seg string, h joseHeader) {
	if hm.n.Load() >= maxKnownHeaders {
		hm.m.Clear()
		hm.n.Store(0)
	}
	if _, loaded := hm.m.LoadOrStore(seg, h); !loaded {
		hm.n.Add(1)
	}
}

// joseHeader is the part of a JOSE header posgate reads. Members are matched by their exact
// (case-sensitive) names, as RFC 7515 requires.
type joseHeader struct {
	Alg    string
	Kid    string
	Typ    string
	HasTyp bool
}

// parseHeader checks the header is one JSON object without duplicate keys (jsonx.CheckObject),
// then reads alg, kid and typ by their exact names. A header that names critical extensions
// ("crit") is refused: posgate implements none (RFC 7515 §4.1.11).
func parseHeader(b []byte) (joseHeader, *VerifyError) {
	if err := jsonx.CheckObject(b); err != nil {
		return joseHeader{}, &VerifyError{Reason: ReasonJSON, Detail: "header: " + err.Error(), Err: err}
	}
	var h joseHeader
	var ve *VerifyError
	var alg []byte
	ok := members(b, func(key []byte, escaped bool, val []byte) bool {
		var ok bool
		switch {
		case keyIs(key, escaped, "alg"):
			alg = val
		case keyIs(key, escaped, "kid"):
			if h.Kid, ok = jsonString(val); !ok {
				ve = verr(ReasonJSON, "header kid is not a string")
			}
		case keyIs(key, escaped, "typ"):
			if h.Typ, ok = jsonString(val); !ok {
				ve = verr(ReasonJSON, "header typ is not a string")
			}
			h.HasTyp = true
		case keyIs(key, escaped, "crit"):
			ve = verr(ReasonJSON, "header: critical extensions (crit) are not supported")
		}
		return ve == nil
	})
	if ve != nil {
		return joseHeader{}, ve
	}
	if !ok {
		return joseHeader{}, verr(ReasonJSON, "header: invalid JSON")
	}
	if alg == nil || string(alg) == "null" || string(alg) == `""` {
		return joseHeader{}, verr(ReasonMissingAlg, "header has no alg")
	}
	if h.Alg, ok = jsonString(alg); !ok { // a number, an array…
		return joseHeader{}, verr(ReasonAlg, "header alg is not a string")
	}
	return h, nil
}

// MinHS256KeyBytes is the shortest shared key VerifyHS256 uses (RFC 7518 §3.2: a key of at least
// the hash size). Shorter keys are skipped; with no usable key the token is refused.
const MinHS256KeyBytes = 32

// VerifyHS256 is the front door for third-party shared-key JWTs (doshii location tokens, jackpot
// assertions). It checks, in order: the size cap, three segments, strict base64url, a header that
// is one JSON object without duplicate keys, alg exactly "HS256" — before any key is touched — and
// the HMAC-SHA256 signature against each candidate key (keys shorter than 32 bytes are never used),
// in constant time. Only then is the payload checked to be one JSON object without duplicate keys;
// it is returned for the dialect to apply its own claim rules. Every failure is a *VerifyError.
func VerifyHS256(raw string, keys [][]byte) (payload []byte, err error) {
	hSeg, pSeg, sSeg, ve := splitSegments(raw)
	if ve != nil {
		return nil, ve
	}
	h, known := hs256Headers.get(hSeg)
	if !known {
		header, ve := decodeHeaderSegment(hSeg)
		if ve != nil {
			return nil, ve
		}
		if h, ve = parseHeader(header); ve != nil {
			return nil, ve
		}
	}
	payload, sig, ve := decodeBody(pSeg, sSeg)
	if ve != nil {
		return nil, ve
	}
	if h.Alg != "HS256" {
		return nil, verr(ReasonAlg, "unsupported algorithm %s", quoteAlg(h.Alg))
	}
	signingInput := raw[:len(hSeg)+1+len(pSeg)]
	usable := 0
	match := 0
	for _, k := range keys {
		if len(k) < MinHS256KeyBytes {
			continue
		}
		usable++
		mac := hmac.New(sha256.New, k)
		mac.Write([]byte(signingInput))
		// Every usable key is tried, so the time taken does not say which one matched.
		if hmac.Equal(mac.Sum(nil), sig) {
			match = 1
		}
	}
	if usable == 0 {
		return nil, verr(ReasonUnknownKey, "no usable verification key (keys shorter than %d bytes are refused)", MinHS256KeyBytes)
	}
	if match != 1 {
		return nil, verr(ReasonSignature, "signature does not verify")
	}
	if !known {
		hs256Headers.put(hSeg, h)
	}
	if err := jsonx.CheckObject(payload); err != nil {
		return nil, &VerifyError{Reason: ReasonJSON, Detail: "payload: " + err.Error(), Err: err}
	}
	return payload, nil
}

// hs256Headers memoises the headers of shared-key tokens that verified (see headerMemo).
var hs256Headers headerMemo

// quoteAlg renders an alg for an error detail: quoted, and cut short so a hostile header cannot
// put a long string into logs and responses.
func quoteAlg(alg string) string {
	if len(alg) > 32 {
		alg = alg[:32] + "…"
	}
	return fmt.Sprintf("%q", alg)
}
