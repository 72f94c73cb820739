package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files of the generated self-signed certificate in the data dir. They are kept across restarts so
// clients that pinned the certificate (the CLI does, by fingerprint) keep trusting it.
const (
	CertFile = "tls-cert.pem"
	KeyFile  = "tls-key.pem"
)

// selfSignedValidity is long: the certificate is a bootstrap convenience for a single machine,
// trusted by pinning, not by a CA; operators who need rotation bring their own (server.tls_cert).
const selfSignedValidity = 5 * 365 * 24 * time.Hour

// loadOrCreateCert returns the certificate at certPath/keyPath, generating a self-signed ECDSA
// P-256 one there first when generate is set and the files do not exist yet. created reports
// whether it was generated now.
func loadOrCreateCert(certPath, keyPath string, generate bool) (cert tls.Certificate, created bool, err error) {
	_, errC := os.Stat(certPath)
	_, errK := os.Stat(keyPath)
	if generate && errors.Is(errC, os.ErrNotExist) && errors.Is(errK, os.ErrNotExist) {
		if err := writeSelfSigned(certPath, keyPath); err != nil {
			return tls.Certificate{}, false, err
		}
		created = true
	}
	cert, err = tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("TLS certificate %s / key %s: %w", certPath, keyPath, err)
	}
	return cert, created, nil
}

func writeSelfSigned(certPath, keyPath string) error {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	dns := []string{"localhost"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		dns = append(dns, h)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "posgate self-signed", Organization: []string{"posgate"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	// The key first, exclusively: two processes starting at once must not both write a pair.
	if err := writeExclusive(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeExclusive(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeExclusive creates path (failing if it exists) with data, synced to disk.
func writeExclusive(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Fingerprint is the SHA-256 of a DER certificate as colon-separated upper-case hex (the form
// browsers and `openssl x509 -fingerprint -sha256` show).
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	parts := make([]string, 0, len(sum))
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

// CertFingerprintFile returns the fingerprint of the first certificate in a PEM file (the CLI pins
// the server's self-signed certificate with it).
func CertFingerprintFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", fmt.Errorf("%s: no PEM certificate", path)
	}
	return Fingerprint(block.Bytes), nil
}
