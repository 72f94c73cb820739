package doshii

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// VendorKey is a vendor's key, shared by the onboarding calls (as the Bearer token) and every
// location JWT signer. It is safe for concurrent use; Set rotates it.
type VendorKey struct {
	p atomic.Pointer[vendorKey]
}

type vendorKey struct {
	raw  string
	macs sync.Pool // of hash.Hash keyed with raw: HMAC set-up costs more than the signature
}

// NewVendorKey returns a VendorKey holding key.
func NewVendorKey(key string) *VendorKey {
	k := &VendorKey{}
	k.Set(key)
	return k
}

// Set replaces the key: every signature made after Set returns uses the new key.
func (k *VendorKey) Set(key string) {
	vk := &vendorKey{raw: key}
	vk.macs.New = func() any { return hmac.New(sha256.New, []byte(key)) }
	k.p.Store(vk)
}

// ErrNoKey is returned when a VendorKey holds no key.
var ErrNoKey = errors.New("doshii: no vendor key")

func (k *VendorKey) get() (*vendorKey, error) {
	if k == nil {
		return nil, ErrNoKey
	}
	vk := k.p.Load()
	if vk == nil || vk.raw == "" {
		return nil, ErrNoKey
	}
	return vk, nil
}

// jwtHeader is base64url({"alg":"HS256","typ":"JWT"}).
const jwtHeader = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"

// SignLocation returns the location JWT for locationToken stamped at: HS256 with the vendor key
// over {"locationToken":…,"timestamp":<epoch seconds>}.
func (k *VendorKey) SignLocation(locationToken string, at time.Time) (string, error) {
	return k.sign("locationToken", locationToken, at)
}

// SignVendor returns the vendor JWT of a cloud POS's socket, {"vendor":apiName,"timestamp":…}.
func (k *VendorKey) SignVendor(apiName string, at time.Time) (string, error) {
	return k.sign("vendor", apiName, at)
}

func (k *VendorKey) sign(claim, value string, at time.Time) (string, error) {
	vk, err := k.get()
	if err != nil {
		return "", err
	}
	if value == "" {
		return "", errors.New("doshii: empty " + claim)
	}
	var pbuf [256]byte
	payload := append(pbuf[:0], `{"`...)
	payload = append(payload, claim...)
	payload = append(payload, `":`...)
	payload, err = appendJSONString(payload, value)
	if err != nil {
		return "", err
	}
	payload = append(payload, `,"timestamp":`...)
	payload = strconv.AppendInt(payload, at.Unix(), 10)
	payload = append(payload, '}')

	enc := base64.RawURLEncoding
	out := make([]byte, 0, len(jwtHeader)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(sha256.Size))
	out = append(out, jwtHeader...)
	out = append(out, '.')
	out = enc.AppendEncode(out, payload)
	mac := vk.macs.Get().(hash.Hash)
	mac.Reset()
	mac.Write(out)
	var sum [sha256.Size]byte
	sig := mac.Sum(sum[:0])
	vk.macs.Put(mac)
	out = append(out, '.')
	out = enc.AppendEncode(out, sig)
	return string(out), nil
}

// appendJSONString appends v as a JSON string: generated tokens and API names need no escaping,
// anything else goes through encoding/json.
func appendJSONString(dst []byte, v string) ([]byte, error) {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(v)
			return append(dst, q...), err
		}
	}
	dst = append(dst, '"')
	dst = append(dst, v...)
	return append(dst, '"'), nil
}
