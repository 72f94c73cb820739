// Package socket holds what posgate's POS-side websocket clients share: capped jittered backoff,
// a bounded memory of recently seen ids, reading a refused upgrade (status, body, Retry-After)
// without trusting the local clock, and dialing with a credential in the URL without ever letting
// that credential reach an error message or follow a redirect.
package socket

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/coder/websocket"
)

// Backoff is a capped exponential delay with jitter: attempt n (from 0) waits a random duration
// in [d/2, d] where d = min(Max, Min·2ⁿ). The lower half keeps a crowd of reconnecting clients
// from hammering a recovering server in step; the floor keeps any one of them from spinning.
type Backoff struct {
	Min, Max time.Duration
}

// Delay returns the wait before attempt n, with r a uniform random number in [0, 1).
func (b Backoff) Delay(n int, r float64) time.Duration {
	if b.Min <= 0 {
		b.Min = 500 * time.Millisecond
	}
	if b.Max < b.Min {
		b.Max = b.Min
	}
	d := b.Min
	for i := 0; i < n && d < b.Max; i++ {
		d *= 2
	}
	if d > b.Max {
		d = b.Max
	}
	if r < 0 {
		r = 0
	}
	if r >= 1 {
		r = 0.999999
	}
	return d/2 + time.Duration(float64(d/2)*r)
}

// Retry schedules a client's reconnections with Backoff. A connection that stayed up at least
// Backoff.Max was a success: the next wait starts again from the shortest delay. One that dropped
// sooner counts as a failed attempt, so a server that accepts and at once closes is not hammered.
type Retry struct {
	Backoff Backoff
	attempt int
}

// Next returns the wait before reconnecting after a connection that was up for up; the server's
// retryAfter, when longer, wins.
func (r *Retry) Next(up, retryAfter time.Duration) time.Duration {
	if up >= r.Backoff.Max {
		r.attempt = 0
	}
	wait := r.Backoff.Delay(r.attempt, rand.Float64())
	r.attempt++
	if retryAfter > wait {
		wait = retryAfter
	}
	return wait
}

// OrDefault is a client's setting v, or d when v is unset (zero or negative).
func OrDefault[T int | int64 | time.Duration](v, d T) T {
	if v <= 0 {
		return d
	}
	return v
}

// Sleep waits d or until ctx is done.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Recent remembers up to MaxEntries ids with a value each, and at most MaxBytes of values in
// total (as counted by the caller); the least recently used go first. The zero value is not
// usable: use NewRecent. It is not safe for concurrent use.
type Recent[V any] struct {
	maxEntries, maxBytes int
	bytes                int
	order                *list.List // of *recentItem[V], most recent at the front
	byID                 map[string]*list.Element
}

type recentItem[V any] struct {
	id   string
	v    V
	size int
}

// NewRecent returns an empty memory; maxEntries < 1 is taken as 1, maxBytes < 1 as unlimited.
func NewRecent[V any](maxEntries, maxBytes int) *Recent[V] {
	if maxEntries < 1 {
		maxEntries = 1
	}
	return &Recent[V]{maxEntries: maxEntries, maxBytes: maxBytes, order: list.New(), byID: map[string]*list.Element{}}
}

// Get returns the value remembered for id and marks it recently used.
func (r *Recent[V]) Get(id string) (V, bool) {
	e, ok := r.byID[id]
	if !ok {
		var zero V
		return zero, false
	}
	r.order.MoveToFront(e)
	return e.Value.(*recentItem[V]).v, true
}

// Put remembers v (of size bytes) for id, replacing what was there, and forgets the least
// recently used ids beyond the limits. A value larger than the whole byte budget is not kept.
func (r *Recent[V]) Put(id string, v V, size int) {
	if e, ok := r.byID[id]; ok {
		r.bytes -= e.Value.(*recentItem[V]).size
		r.order.Remove(e)
		delete(r.byID, id)
	}
	if r.maxBytes > 0 && size > r.maxBytes {
		return
	}
	r.byID[id] = r.order.PushFront(&recentItem[V]{id: id, v: v, size: size})
	r.bytes += size
	for r.order.Len() > r.maxEntries || (r.maxBytes > 0 && r.bytes > r.maxBytes) {
		last := r.order.Back()
		it := last.Value.(*recentItem[V])
		r.order.Remove(last)
		delete(r.byID, it.id)
		r.bytes -= it.size
	}
}

// Len is the number of ids remembered.
func (r *Recent[V]) Len() int { return r.order.Len() }

// Bytes is the total size of the values remembered.
func (r *Recent[V]) Bytes() int { return r.bytes }

// Refusal is a non-101 answer to an upgrade.
type Refusal struct {
	StatusCode int
	Body       []byte         // at most the first KiB
	RetryAfter time.Duration  // 0 when absent or unreadable
	Response   *http.Response // its body already read; for the Date header
	At         time.Time      // the local clock when it arrived
}

// ReadRefusal reads resp (its body at most limit bytes) into a Refusal; now is the local time it
// arrived.
func ReadRefusal(resp *http.Response, limit int64, now time.Time) *Refusal {
	r := &Refusal{StatusCode: resp.StatusCode, RetryAfter: RetryAfter(resp.Header), Response: resp, At: now}
	if resp.Body != nil {
		r.Body, _ = io.ReadAll(io.LimitReader(resp.Body, limit))
	}
	return r
}

// RetryAfter reads a Retry-After header: delay-seconds, or an HTTP-date taken relative to the
// response's own Date header — never to the local clock, which may be wrong. Anything else, or
// a negative value, is 0; values are capped at a day.
func RetryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	const maxWait = 24 * time.Hour
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(maxWait/time.Second) {
			return maxWait
		}
		return time.Duration(n) * time.Second
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	date, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		return 0
	}
	d := at.Sub(date)
	if d <= 0 {
		return 0
	}
	return min(d, maxWait)
}

// Printable returns s cut to max bytes with control characters replaced, for quoting a server's
// message in an error without letting it forge log lines.
func Printable(s string, max int) string {
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

// IsLoopback reports whether host (no port) names this machine.
func IsLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// CheckBaseURL parses a posgate base URL: http or https, a host, no query or fragment, no user
// info. Plain http is refused for a host other than loopback unless allowPlain is set, because
// the credentials would cross the network in clear.
func CheckBaseURL(raw string, allowPlain bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("URL %q: %w", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("URL %q: the scheme must be https (or http on loopback)", raw)
	case u.Host == "":
		return nil, fmt.Errorf("URL %q has no host", raw)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return nil, fmt.Errorf("URL %q: give the base URL only, without user info, query or fragment", raw)
	case u.Scheme == "http" && !allowPlain && !IsLoopback(u.Hostname()):
		return nil, fmt.Errorf("URL %q: plain http to a host other than loopback would send the credentials in clear; use https", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return u, nil
}

// Endpoint returns base with path appended and the scheme turned into ws/wss when ws is set.
func Endpoint(base *url.URL, path string, query url.Values, ws bool) string {
	u := *base
	u.Path = base.Path + path
	u.RawPath = ""
	if ws {
		if u.Scheme == "https" {
			u.Scheme = "wss"
		} else {
			u.Scheme = "ws"
		}
	}
	u.RawQuery = query.Encode()
	return u.String()
}

// ErrRedirect is returned when a server answers an upgrade carrying a credential with a redirect:
// following it would hand the credential to whatever the redirect names.
var ErrRedirect = errors.New("the server answered with a redirect; not followed, because the URL carries a credential")

// Dial opens a websocket to u, whose query carries secret. It never follows a redirect, and its
// error never contains secret (net/http errors quote the whole URL). On a refused upgrade it
// returns the server's answer as a *Refusal together with the error.
func Dial(ctx context.Context, u, secret string, hc *http.Client, readLimit int64, now func() time.Time) (*websocket.Conn, *Refusal, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return ErrRedirect }
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: &c})
	if err != nil {
		var ref *Refusal
		if resp != nil {
			ref = ReadRefusal(resp, 1024, now())
		}
		return nil, ref, Redact(err, secret)
	}
	if readLimit > 0 {
		conn.SetReadLimit(readLimit)
	}
	return conn, nil, nil
}

// ErrUntrustedCertificate marks a connection refused because the server's certificate could not
// be verified: a configuration problem that retrying does not fix.
var ErrUntrustedCertificate = errors.New("the server's TLS certificate is not trusted")

// Redact returns err with every occurrence of secret (raw or query-escaped) replaced; the result
// still matches errors.Is for context cancellation, redirects and ErrUntrustedCertificate.
func Redact(err error, secret string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	if secret != "" {
		clean = strings.ReplaceAll(msg, secret, "REDACTED")
		if esc := url.QueryEscape(secret); esc != secret {
			clean = strings.ReplaceAll(clean, esc, "REDACTED")
		}
	}
	if clean == msg {
		if isCertificate(err) {
			return &marked{err}
		}
		return err
	}
	return &redacted{msg: clean, kind: kindOf(err)}
}

func isCertificate(err error) bool {
	var cv *tls.CertificateVerificationError
	return errors.As(err, &cv)
}

// marked adds ErrUntrustedCertificate to an error's chain.
type marked struct{ err error }

func (e *marked) Error() string   { return e.err.Error() }
func (e *marked) Unwrap() []error { return []error{e.err, ErrUntrustedCertificate} }

type redacted struct {
	msg  string
	kind error // a sentinel the original wrapped, kept for errors.Is; never the original itself
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.kind }

func kindOf(err error) error {
	if isCertificate(err) {
		return ErrUntrustedCertificate
	}
	for _, k := range []error{context.Canceled, context.DeadlineExceeded, ErrRedirect} {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}
