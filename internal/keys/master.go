package keys

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// MasterKeySize is the size of the master key: 256 bits.
const MasterKeySize = 32

// MasterKeyEnv is the environment variable that carries the master key (standard base64 of 32
// bytes). Every replica of one deployment must be given the same key.
const MasterKeyEnv = "POSGATE_MASTER_KEY"

// MasterKeyFile is the file name of the master key inside the data directory, used when
// MasterKeyEnv is unset.
const MasterKeyFile = "master.key"

// LoadMasterKey returns the deployment's master key.
//
// If POSGATE_MASTER_KEY is set it must be the base64 of exactly 32 bytes (generate one with
// `openssl rand -base64 32`). Otherwise the key is read from <dataDir>/master.key, which is created
// with mode 0600 on first start. The file holds the key as one line of standard base64 — the same
// text POSGATE_MASTER_KEY takes, so a second replica can be given it — or as 32 raw bytes. A file
// of any other size is refused, and so is a file that group or others may read or write: a
// master key anyone on the machine can read protects nothing.
func LoadMasterKey(dataDir string) ([]byte, error) {
	k, err := ReadMasterKey(dataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return createMasterKeyFile(dataDir, filepath.Join(dataDir, MasterKeyFile))
	}
	return k, err
}

// ReadMasterKey is LoadMasterKey for a deployment that exists already (tools beside posgate): it
// never creates the key, and a missing key file is an error wrapping fs.ErrNotExist.
func ReadMasterKey(dataDir string) ([]byte, error) {
	if v, ok := os.LookupEnv(MasterKeyEnv); ok && v != "" {
		k, err := ParseMasterKey(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", MasterKeyEnv, err)
		}
		return k, nil
	}
	if dataDir == "" {
		return nil, fmt.Errorf("master key: %s is unset and no data directory was given", MasterKeyEnv)
	}
	path := filepath.Join(dataDir, MasterKeyFile)
	k, err := readMasterKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("master key: %s: %w", path, err)
	}
	return k, err
}

// ParseMasterKey decodes the base64 text form of a master key (standard or URL alphabet, padded
// or not, surrounding white space ignored) and checks it is 32 bytes.
func ParseMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	var k []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err = enc.Strict().DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("master key is not base64 (generate one with: openssl rand -base64 32)")
	}
	if len(k) != MasterKeySize {
		return nil, fmt.Errorf("master key decodes to %d bytes, want %d (generate one with: openssl rand -base64 32)", len(k), MasterKeySize)
	}
	return k, nil
}

func readMasterKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err // fs.ErrNotExist is handled by the caller
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("master key file %s is not a regular file", path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("master key file %s has mode %04o: group or others can access it; run `chmod 600 %s` (and consider rotating secrets if others could read it)",
			path, fi.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	if len(data) == MasterKeySize {
		return data, nil
	}
	k, err := ParseMasterKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("master key file %s has the wrong size or format (%d bytes; want one line of base64 of %d bytes, or %d raw bytes)",
			path, len(data), MasterKeySize, MasterKeySize)
	}
	return k, nil
}

// createMasterKeyFile writes a fresh key atomically: to a temporary file first, then linked into
// place, so a crash never leaves a half-written key and two processes starting at once agree on
// one key (the loser of the link reads the winner's).
func createMasterKeyFile(dataDir, path string) ([]byte, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("master key: create data directory: %w", err)
	}
	key := make([]byte, MasterKeySize)
	rand.Read(key)
	tmp, err := os.CreateTemp(dataDir, ".master.key.*")
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("master key: %w", err)
	}
	if _, err := tmp.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("master key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("master key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readMasterKeyFile(path)
		}
		return nil, fmt.Errorf("master key: %w", err)
	}
	if d, err := os.Open(dataDir); err == nil { // make the new directory entry durable
		d.Sync()
		d.Close()
	}
	return key, nil
}

// DeriveKey returns a 32-byte key for one purpose, derived from the master key with HKDF-SHA256.
// Each use of the master key (sealing, the gateway's identity-header signature, …) takes its own
// derived key, so no two mechanisms ever share key material.
func DeriveKey(master []byte, purpose string) []byte {
	k, err := hkdf.Key(sha256.New, master, nil, "posgate/"+purpose, 32)
	if err != nil { // only for an out-of-range length, which 32 is not
		panic("keys: hkdf: " + err.Error())
	}
	return k
}

// Fingerprint returns HMAC-SHA256(DeriveKey(master, purpose), data): a value every replica
// sharing the master key computes alike, that reveals nothing about data to someone without the
// master key (a copy of the database, say), so it can be stored where a plain hash of a
// human-chosen secret would invite guessing.
func Fingerprint(master []byte, purpose string, data []byte) []byte {
	m := hmac.New(sha256.New, DeriveKey(master, purpose))
	m.Write(data)
	return m.Sum(nil)
}
