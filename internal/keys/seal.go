package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// Sealed blob format, version 1:
//
//	0x01 | nonce (12 bytes, random) | AES-256-GCM ciphertext and 16-byte tag
//
// The key is DeriveKey(master, "sealer/v1"). The additional data authenticated by GCM is the
// version byte followed by the caller's additional data, so neither the format version nor the
// blob's place can be changed without Open failing. A new format takes a new version byte; Open
// keeps reading the old ones.
//
// Random 96-bit nonces are safe for up to 2^32 seals under one key (NIST SP 800-38D §8.3); posgate
// seals a handful of secrets per credential created, many orders of magnitude below that.
const (
	sealVersion1 byte = 1
	sealOverhead      = 1 + 12 + 16
)

var (
	// ErrSealedFormat is returned by Open for a blob too short or of an unknown version.
	ErrSealedFormat = errors.New("keys: sealed data is malformed or of an unknown version")
	// ErrOpen is returned by Open when authentication fails: the master key is not the one that
	// sealed it, or the blob or its additional data was altered or moved.
	ErrOpen = errors.New("keys: cannot open sealed data (wrong master key, or data altered or moved)")
)

type aesSealer struct {
	aead cipher.AEAD
}

// NewSealer returns a Sealer keyed from the 32-byte master key.
func NewSealer(master []byte) (Sealer, error) {
	if len(master) != MasterKeySize {
		return nil, fmt.Errorf("keys: master key is %d bytes, want %d", len(master), MasterKeySize)
	}
	block, err := aes.NewCipher(DeriveKey(master, "sealer/v1"))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &aesSealer{aead: aead}, nil
}

func (s *aesSealer) Seal(plaintext, additionalData []byte) ([]byte, error) {
	out := make([]byte, 1+12, sealOverhead+len(plaintext))
	out[0] = sealVersion1
	rand.Read(out[1:13])
	return s.aead.Seal(out, out[1:13], plaintext, sealAD(sealVersion1, additionalData)), nil
}

func (s *aesSealer) Open(sealed, additionalData []byte) ([]byte, error) {
	if len(sealed) < sealOverhead || sealed[0] != sealVersion1 {
		return nil, ErrSealedFormat
	}
	pt, err := s.aead.Open(nil, sealed[1:13], sealed[13:], sealAD(sealVersion1, additionalData))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

func sealAD(version byte, ad []byte) []byte {
	b := make([]byte, 0, 1+len(ad))
	return append(append(b, version), ad...)
}
