// Package keys holds posgate's signing keyring (EdDSA by default, ES256/RS256 selectable; states
// next → active → retired; JWKS) and seals secrets at rest with AES-256-GCM under the master key.
// Other packages code against the Sealer interface below.
package keys

// Sealer seals and opens small secrets with the master key (AES-256-GCM, random nonce). The
// additional data binds a sealed blob to its place (e.g. "vendor-key:dv_123"), so a blob copied to
// another row does not open.
type Sealer interface {
	Seal(plaintext, additionalData []byte) ([]byte, error)
	Open(sealed, additionalData []byte) ([]byte, error)
}
