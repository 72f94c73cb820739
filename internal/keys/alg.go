package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// Signing algorithms (JWS "alg" values). Each key is pinned to exactly one of them when it is made;
// a token's header never chooses how it is verified.
const (
	AlgEdDSA = "EdDSA" // Ed25519 (RFC 8037); the default: fastest and smallest
	AlgES256 = "ES256" // ECDSA P-256 with SHA-256
	AlgRS256 = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys or larger
)

// RSABits is the size of RSA keys posgate generates; keys smaller than MinRSABits are refused.
const (
	RSABits    = 2048
	MinRSABits = 2048
)

// ValidAlg reports whether alg is one of the algorithms the keyring can make keys for.
func ValidAlg(alg string) bool {
	return alg == AlgEdDSA || alg == AlgES256 || alg == AlgRS256
}

// generateKey makes a new private key for alg.
func generateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case AlgEdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case AlgES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgRS256:
		return rsa.GenerateKey(rand.Reader, RSABits)
	}
	return nil, fmt.Errorf("keys: unsupported algorithm %q (want %s, %s or %s)", alg, AlgEdDSA, AlgES256, AlgRS256)
}

// checkPublic verifies that pub is a key of the kind alg names (and, for RSA, large enough).
func checkPublic(alg string, pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if alg == AlgEdDSA && len(k) == ed25519.PublicKeySize {
			return nil
		}
	case *ecdsa.PublicKey:
		if alg == AlgES256 && k.Curve == elliptic.P256() {
			return nil
		}
	case *rsa.PublicKey:
		if alg == AlgRS256 {
			if k.N.BitLen() < MinRSABits {
				return fmt.Errorf("RSA key of %d bits is below the %d-bit minimum", k.N.BitLen(), MinRSABits)
			}
			return nil
		}
	}
	return fmt.Errorf("key of type %T does not match algorithm %q", pub, alg)
}

// sign signs msg with priv for alg, producing the JWS signature bytes.
func sign(alg string, priv crypto.Signer, msg []byte) ([]byte, error) {
	switch alg {
	case AlgEdDSA:
		return ed25519.Sign(priv.(ed25519.PrivateKey), msg), nil
	case AlgES256:
		h := sha256.Sum256(msg)
		r, s, err := ecdsa.Sign(rand.Reader, priv.(*ecdsa.PrivateKey), h[:])
		if err != nil {
			return nil, err
		}
		sig := make([]byte, 64) // JWS: fixed-width big-endian r || s (RFC 7518 §3.4), not ASN.1
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig, nil
	case AlgRS256:
		h := sha256.Sum256(msg)
		return rsa.SignPKCS1v15(nil, priv.(*rsa.PrivateKey), crypto.SHA256, h[:])
	}
	return nil, fmt.Errorf("keys: unsupported algorithm %q", alg)
}

// verify checks a JWS signature of msg under pub for alg. The caller has already made sure pub
// belongs to alg (checkPublic), so the type assertions cannot fail.
func verify(alg string, pub crypto.PublicKey, msg, sig []byte) bool {
	switch alg {
	case AlgEdDSA:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(pub.(ed25519.PublicKey), msg, sig)
	case AlgES256:
		if len(sig) != 64 {
			return false
		}
		h := sha256.Sum256(msg)
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(pub.(*ecdsa.PublicKey), h[:], r, s)
	case AlgRS256:
		k := pub.(*rsa.PublicKey)
		if len(sig) != k.Size() {
			return false
		}
		h := sha256.Sum256(msg)
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, h[:], sig) == nil
	}
	return false
}

// jwk is a public key in RFC 7517 form. Field order in the struct is the order of the JSON.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Kid string `json:"kid,omitempty"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
}

var b64 = base64.RawURLEncoding

// publicJWK returns the key's required members (no kid/alg/use).
func publicJWK(pub crypto.PublicKey) (jwk, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return jwk{Kty: "OKP", Crv: "Ed25519", X: b64.EncodeToString(k)}, nil
	case *ecdsa.PublicKey:
		raw, err := k.Bytes() // uncompressed point 0x04 || X || Y
		if err != nil {
			return jwk{}, err
		}
		return jwk{Kty: "EC", Crv: "P-256", X: b64.EncodeToString(raw[1:33]), Y: b64.EncodeToString(raw[33:65])}, nil
	case *rsa.PublicKey:
		return jwk{Kty: "RSA", N: b64.EncodeToString(k.N.Bytes()), E: b64.EncodeToString(big.NewInt(int64(k.E)).Bytes())}, nil
	}
	return jwk{}, fmt.Errorf("keys: unsupported public key type %T", pub)
}

// thumbprint is the RFC 7638 JWK thumbprint of pub (SHA-256, base64url): posgate's kid. It is
// derived from the key itself, so a kid can never name two different keys.
func thumbprint(pub crypto.PublicKey) (string, error) {
	j, err := publicJWK(pub)
	if err != nil {
		return "", err
	}
	// RFC 7638 §3.2: the required members only, in lexicographic order, no white space.
	var canon []byte
	switch j.Kty {
	case "OKP":
		canon, err = json.Marshal(struct {
			Crv string `json:"crv"`
			Kty string `json:"kty"`
			X   string `json:"x"`
		}{j.Crv, j.Kty, j.X})
	case "EC":
		canon, err = json.Marshal(struct {
			Crv string `json:"crv"`
			Kty string `json:"kty"`
			X   string `json:"x"`
			Y   string `json:"y"`
		}{j.Crv, j.Kty, j.X, j.Y})
	case "RSA":
		canon, err = json.Marshal(struct {
			E   string `json:"e"`
			Kty string `json:"kty"`
			N   string `json:"n"`
		}{j.E, j.Kty, j.N})
	}
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canon)
	return b64.EncodeToString(sum[:]), nil
}

// parsePublic decodes a stored PKIX public key and checks it against alg.
func parsePublic(alg string, der []byte) (crypto.PublicKey, error) {
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	if err := checkPublic(alg, pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// parsePrivate decodes an unsealed PKCS#8 private key and checks it is the private half of pub.
func parsePrivate(der []byte, pub crypto.PublicKey) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", k)
	}
	eq, ok := s.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !eq.Equal(pub) {
		return nil, errors.New("private key does not match the stored public key")
	}
	return s, nil
}
