package keys

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"testing"
)

func newTestSealer(t testing.TB, fill byte) Sealer {
	t.Helper()
	s, err := NewSealer(bytes.Repeat([]byte{fill}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealerRoundTrip(t *testing.T) {
	s := newTestSealer(t, 1)
	for _, pt := range [][]byte{nil, {}, []byte("x"), bytes.Repeat([]byte("secret"), 1000)} {
		blob, err := s.Seal(pt, []byte("vendor-key:dv_1"))
		if err != nil {
			t.Fatal(err)
		}
		if len(blob) != sealOverhead+len(pt) || blob[0] != sealVersion1 {
			t.Fatalf("blob of %d bytes (version %d) for %d bytes of plaintext", len(blob), blob[0], len(pt))
		}
		if len(pt) > 4 && bytes.Contains(blob, pt[:5]) {
			t.Fatal("plaintext visible in the sealed blob")
		}
		got, err := s.Open(blob, []byte("vendor-key:dv_1"))
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("Open = %q, %v", got, err)
		}
	}
	a, _ := s.Seal([]byte("same"), nil)
	b, _ := s.Seal([]byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext are equal: nonce not random")
	}
}

func TestSealerRefuses(t *testing.T) {
	s := newTestSealer(t, 1)
	ad := []byte("signing-key:abc")
	blob, _ := s.Seal([]byte("private key"), ad)

	if _, err := s.Open(blob, []byte("signing-key:abd")); !errors.Is(err, ErrOpen) {
		t.Fatalf("other additional data: err = %v", err)
	}
	if _, err := s.Open(blob, nil); !errors.Is(err, ErrOpen) {
		t.Fatalf("missing additional data: err = %v", err)
	}
	if _, err := newTestSealer(t, 2).Open(blob, ad); !errors.Is(err, ErrOpen) {
		t.Fatalf("other master key: err = %v", err)
	}
	for i := 1; i < len(blob); i++ {
		bad := bytes.Clone(blob)
		bad[i] ^= 0x01
		if _, err := s.Open(bad, ad); !errors.Is(err, ErrOpen) {
			t.Fatalf("bit flipped at %d: err = %v", i, err)
		}
	}
	bad := bytes.Clone(blob)
	bad[0] = 2
	if _, err := s.Open(bad, ad); !errors.Is(err, ErrSealedFormat) {
		t.Fatalf("unknown version: err = %v", err)
	}
	for _, short := range [][]byte{nil, {1}, blob[:sealOverhead-1]} {
		if _, err := s.Open(short, ad); !errors.Is(err, ErrSealedFormat) {
			t.Fatalf("short blob (%d bytes): err = %v", len(short), err)
		}
	}
	if _, err := NewSealer(make([]byte, 16)); err == nil {
		t.Fatal("a 16-byte master key was accepted")
	}
}

// The documented format, rebuilt here from its description, opens with the Sealer: the format
// is what the comment says, so a future version can read version-1 blobs.
func TestSealedFormatV1(t *testing.T) {
	master := bytes.Repeat([]byte{9}, 32)
	block, _ := aes.NewCipher(DeriveKey(master, "sealer/v1"))
	aead, _ := cipher.NewGCM(block)
	nonce := bytes.Repeat([]byte{5}, 12)
	ad := []byte("row:1")
	blob := append([]byte{1}, nonce...)
	blob = aead.Seal(blob, nonce, []byte("hello"), append([]byte{1}, ad...))
	s, _ := NewSealer(master)
	got, err := s.Open(blob, ad)
	if err != nil || string(got) != "hello" {
		t.Fatalf("Open = %q, %v", got, err)
	}
}
