package token

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/jsonx"
	"github.com/posgate/posgate/internal/keys"
)

// TypeAccessToken is the JOSE typ of every posgate token (RFC 9068 §2.1).
const TypeAccessToken = "at+jwt"

// issuer signs posgate tokens with the keyring's active key. The JWS is assembled by hand (no JWT
// library): the header is fixed per key and cached, the payload is written in one pass, so issuing
// costs little more than the signature itself (see BenchmarkIssue).
type issuer struct {
	kr  *keys.Keyring
	clk clock.Clock
	iss string
	hdr atomic.Pointer[cachedHeader]
}

type cachedHeader struct {
	kid string
	b64 string // base64url of {"alg":…,"kid":…,"typ":"at+jwt"}
}

// NewIssuer returns the Issuer of posgate's own tokens; issuerURL is their iss.
func NewIssuer(kr *keys.Keyring, clk clock.Clock, issuerURL string) Issuer {
	return &issuer{kr: kr, clk: clk, iss: issuerURL}
}

// NewJTI returns a fresh token id: 128 random bits, base64url (22 characters).
func NewJTI() string {
	var b [16]byte
	rand.Read(b[:])
	return b64.EncodeToString(b[:])
}

// Issue signs c for lifetime (at most the keyring's maximum token lifetime, so no token outlives
// the publication of its key). It sets Issuer, JTI (when empty), IssuedAt and ExpiresAt, all times
// in whole seconds as they appear in the token, and returns the compact JWS and the claims as
// signed. Extra may not use a registered claim name.
func (i *issuer) Issue(_ context.Context, c Claims, lifetime time.Duration) (string, *Claims, error) {
	if lifetime < time.Second {
		return "", nil, fmt.Errorf("token: lifetime %v is shorter than one second", lifetime)
	}
	if max := i.kr.MaxTokenLifetime(); lifetime > max {
		return "", nil, fmt.Errorf("token: lifetime %v exceeds the keyring's maximum token lifetime %v", lifetime, max)
	}
	signer, err := i.kr.Active()
	if err != nil {
		return "", nil, err
	}
	now := i.clk.Now()
	c.Issuer = i.iss
	if c.JTI == "" {
		c.JTI = NewJTI()
	}
	c.IssuedAt = time.Unix(now.Unix(), 0)
	c.ExpiresAt = c.IssuedAt.Add(lifetime.Truncate(time.Second))
	if !c.NotBefore.IsZero() {
		c.NotBefore = time.Unix(c.NotBefore.Unix(), 0)
	}
	payload, err := encodeClaims(&c)
	if err != nil {
		return "", nil, err
	}
	hdr := i.header(signer)
	buf := make([]byte, 0, len(hdr)+1+b64.EncodedLen(len(payload))+1+b64.EncodedLen(512))
	buf = append(buf, hdr...)
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, payload)
	sig, err := signer.Sign(buf)
	if err != nil {
		return "", nil, fmt.Errorf("token: sign: %w", err)
	}
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	if len(buf) > MaxTokenBytes {
		return "", nil, errors.New("token: the claims make a token larger than MaxTokenBytes")
	}
	return string(buf), &c, nil
}

// header returns the encoded header for signer's key, computing it once per key.
func (i *issuer) header(s *keys.Signer) string {
	if h := i.hdr.Load(); h != nil && h.kid == s.KID {
		return h.b64
	}
	j := append([]byte(`{"alg":`), jsonx.AppendString(nil, s.Alg)...)
	j = append(j, `,"kid":`...)
	j = jsonx.AppendString(j, s.KID)
	j = append(j, `,"typ":"`+TypeAccessToken+`"}`...)
	h := &cachedHeader{kid: s.KID, b64: b64.EncodeToString(j)}
	i.hdr.Store(h)
	return h.b64
}
