package doshii_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"net/http"
	"testing"
	"time"

	"github.com/posgate/posgate/client/doshii"
)

// BenchmarkSignLocation is the cost of one location JWT (a signature per request).
func BenchmarkSignLocation(b *testing.B) {
	k := doshii.NewVendorKey("pg_vk_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.SignLocation("pg_lt_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG", now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTransportSign is what Transport adds to a request before sending it: the clock, the
// signature, the cloned request and its two headers (the base transport answers at once).
func BenchmarkTransportSign(b *testing.B) {
	tr := &doshii.Transport{Key: doshii.NewVendorKey("pg_vk_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"),
		Vendor: "myposco", LocationToken: "pg_lt_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG", Base: nop{}}
	req, _ := http.NewRequest("GET", "http://127.0.0.1/pos/v3/locations/dl_1", nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.RoundTrip(req); err != nil {
			b.Fatal(err)
		}
	}
}

type nop struct{}

var ok = &http.Response{StatusCode: 200, Body: http.NoBody}

func (nop) RoundTrip(*http.Request) (*http.Response, error) { return ok, nil }

// BenchmarkBaselineHMAC is the floor of a signature: one HMAC-SHA256 over a JWT's signing input
// with a prepared key (run with the others, so their ratio to it holds on a busy machine).
func BenchmarkBaselineHMAC(b *testing.B) {
	mac := hmac.New(sha256.New, []byte("pg_vk_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"))
	msg := []byte("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJsb2NhdGlvblRva2VuIjoicGdfbHRfMDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6QUJDREVGRyIsInRpbWVzdGFtcCI6MTcwMDAwMDAwMH0")
	var sum []byte
	for b.Loop() {
		mac.Reset()
		mac.Write(msg)
		sum = mac.Sum(sum[:0])
	}
}
