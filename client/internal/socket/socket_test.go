package socket

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 3 * time.Second}
	for n := 0; n < 70; n++ {
		ceil := b.Max
		if n < 5 {
			ceil = min(b.Min<<n, b.Max)
		}
		for _, r := range []float64{0, 0.5, 0.999999, -1, 7} {
			d := b.Delay(n, r)
			if d < ceil/2 || d > ceil {
				t.Fatalf("Delay(%d, %v) = %v, want in [%v, %v]", n, r, d, ceil/2, ceil)
			}
		}
	}
	if d := (Backoff{}).Delay(0, 0); d != 250*time.Millisecond {
		t.Fatalf("zero Backoff: %v", d)
	}
	if d := (Backoff{Min: time.Second, Max: time.Millisecond}).Delay(9, 0.999999); d > time.Second {
		t.Fatalf("Max below Min: %v", d)
	}
}

func TestRecent(t *testing.T) {
	r := NewRecent[string](3, 10)
	r.Put("a", "A", 4)
	r.Put("b", "B", 4)
	if _, ok := r.Get("a"); !ok { // a is now the most recently used
		t.Fatal("a missing")
	}
	r.Put("c", "C", 4) // 12 bytes > 10: the least recently used (b) goes
	if _, ok := r.Get("b"); ok {
		t.Fatal("b kept beyond the byte budget")
	}
	if v, ok := r.Get("a"); !ok || v != "A" || r.Len() != 2 || r.Bytes() != 8 {
		t.Fatalf("a=%q %v len %d bytes %d", v, ok, r.Len(), r.Bytes())
	}
	r.Put("big", "X", 11) // larger than the whole budget: not kept, nothing evicted
	if _, ok := r.Get("big"); ok || r.Len() != 2 {
		t.Fatal("oversized value kept")
	}
	r.Put("a", "A2", 1) // replacing updates the size
	if r.Bytes() != 5 {
		t.Fatalf("bytes %d", r.Bytes())
	}
	r2 := NewRecent[struct{}](2, 0)
	for i := range 100 {
		r2.Put(fmt.Sprint(i), struct{}{}, 0)
	}
	if r2.Len() != 2 {
		t.Fatalf("len %d", r2.Len())
	}
	if _, ok := r2.Get("99"); !ok {
		t.Fatal("newest forgotten")
	}
}

func TestRetryAfter(t *testing.T) {
	date := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	h := func(kv ...string) http.Header {
		x := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			x.Set(kv[i], kv[i+1])
		}
		return x
	}
	for _, c := range []struct {
		h    http.Header
		want time.Duration
	}{
		{h(), 0},
		{h("Retry-After", "12"), 12 * time.Second},
		{h("Retry-After", " 3 "), 3 * time.Second},
		{h("Retry-After", "-4"), 0},
		{h("Retry-After", "soon"), 0},
		{h("Retry-After", "99999999999"), 24 * time.Hour},
		// An HTTP-date counts from the response's Date, whatever the local clock says.
		{h("Retry-After", date.Add(90*time.Second).Format(http.TimeFormat), "Date", date.Format(http.TimeFormat)), 90 * time.Second},
		{h("Retry-After", date.Format(http.TimeFormat)), 0}, // no Date to count from
		{h("Retry-After", date.Add(-time.Minute).Format(http.TimeFormat), "Date", date.Format(http.TimeFormat)), 0},
	} {
		if got := RetryAfter(c.h); got != c.want {
			t.Errorf("%v: %v, want %v", c.h, got, c.want)
		}
	}
}

func TestRedact(t *testing.T) {
	const secret = "tok+en/with=chars"
	inner := &url.Error{Op: "Get", URL: "wss://h/ws?token=" + url.QueryEscape(secret), Err: errors.New("connection refused")}
	for _, err := range []error{inner, fmt.Errorf("dial: %w %s", inner, secret), fmt.Errorf("x: %w", context.Canceled)} {
		got := Redact(err, secret)
		if strings.Contains(got.Error(), secret) || strings.Contains(got.Error(), url.QueryEscape(secret)) {
			t.Fatalf("not redacted: %v", got)
		}
		if errors.Is(err, context.Canceled) != errors.Is(got, context.Canceled) {
			t.Fatalf("errors.Is(context.Canceled) changed for %v", err)
		}
	}
	if Redact(nil, secret) != nil {
		t.Fatal("nil")
	}
	if !errors.Is(Redact(fmt.Errorf("%w: %s", ErrRedirect, secret), secret), ErrRedirect) {
		t.Fatal("ErrRedirect lost")
	}
}

func TestCheckBaseURL(t *testing.T) {
	for _, ok := range []string{"https://pos.example.com", "https://h:8443/prefix/", "http://127.0.0.1:8080", "http://localhost", "http://[::1]:80"} {
		if _, err := CheckBaseURL(ok, false); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://pos.example.com", "ws://h", "https://", "https://h?x=1", "https://u:p@h", "https://h#f", "::"} {
		if _, err := CheckBaseURL(bad, false); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if _, err := CheckBaseURL("http://pos.example.com", true); err != nil {
		t.Error(err)
	}
	u, _ := CheckBaseURL("https://h:8443/prefix/", false)
	if got := Endpoint(u, "/ws", url.Values{"token": {"a b"}}, true); got != "wss://h:8443/prefix/ws?token=a+b" {
		t.Fatal(got)
	}
}

func TestPrintable(t *testing.T) {
	if got := Printable("a\nb\x00c\xff", 100); got != "a?b?c?" {
		t.Fatalf("%q", got)
	}
	if got := Printable(strings.Repeat("x", 10), 4); got != "xxxx…" {
		t.Fatalf("%q", got)
	}
}
