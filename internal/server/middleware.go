package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/metrics"
)

// RequestIDHeader carries the request id: generated here, echoed in the response and the logs.
const RequestIDHeader = "X-Request-Id"

// reqInfo is shared, mutable state of one request across the middleware chain: handlers further in
// work on clones of the *http.Request (WithContext), so the route pattern the mux matched is copied
// back here for the access log and metrics.
type reqInfo struct {
	id      string
	pattern string
}

type reqInfoKey struct{}

// reqState is the per-request state observe allocates, in one piece: it is itself the request's
// context (it embeds the parent and answers Value(reqInfoKey{}) with &info and
// Value(auth.AddrContextKey{}) with &addr), so attaching them costs no context.WithValue node,
// and the status writer and the X-Request-Id value slice live in the same allocation.
type reqState struct {
	context.Context
	info     reqInfo
	addr     string // the client address, as resolveAddr decided it (auth.Addr reads it)
	sw       statusWriter
	idHeader [1]string
}

func (rs *reqState) Value(key any) any {
	switch key {
	case reqInfoKey{}:
		return &rs.info
	case auth.AddrContextKey{}:
		return &rs.addr
	}
	return rs.Context.Value(key)
}

func infoOf(ctx context.Context) *reqInfo {
	ri, _ := ctx.Value(reqInfoKey{}).(*reqInfo)
	return ri
}

// RequestID returns the id of the request ctx belongs to ("" outside a request).
func RequestID(ctx context.Context) string {
	if ri := infoOf(ctx); ri != nil {
		return ri.id
	}
	return ""
}

// Request ids are 16 lowercase hex characters (64 bits): mix(base + n), where base is
// random per process (crypto/rand, read once), n counts this process's requests, and mix is a
// bijection on 64-bit values (the splitmix64 finaliser). Ids are therefore unique within a process
// for 2^64 requests, as unlikely to collide across processes as random ids, do not reveal request
// counts at a glance, and cost a few multiplications instead of a crypto/rand read per request.
// They are correlation handles, not secrets: nothing may rely on them being unpredictable.
var (
	requestIDBase = func() uint64 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic("server: crypto/rand: " + err.Error())
		}
		return binary.LittleEndian.Uint64(b[:])
	}()
	requestIDCount atomic.Uint64
)

// newRequestID returns the next request id. A client-sent X-Request-Id is not trusted (it could
// forge log lines or collide); it is ignored.
func newRequestID() string {
	return formatRequestID(mix64(requestIDBase + requestIDCount.Add(1)))
}

// mix64 is the splitmix64 finaliser: a bijection on uint64 that spreads consecutive inputs.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func formatRequestID(v uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

// statusWriter records the status and size of a response. It keeps the optional interfaces
// handlers rely on: Flush (server-sent events), Hijack (websockets) and Unwrap
// (http.ResponseController, which extends write deadlines).
type statusWriter struct {
	http.ResponseWriter
	status   int
	bytes    int64
	hijacked bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijacking not supported")
	}
	c, rw, err := h.Hijack()
	if err == nil {
		w.hijacked = true
		if w.status == 0 {
			w.status = http.StatusSwitchingProtocols
		}
	}
	return c, rw, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe is the outermost middleware: request id, timing, access log and metrics. The access log
// holds the method, the matched route pattern, the path (never the query string, which may carry
// a ?token=), status, size, duration and client address; never a header or a body.
//
// It also decides the client address once (see resolveAddr) and attaches it for auth.Addr.
func observe(log *slog.Logger, trusted []netip.Prefix, next http.Handler) http.Handler {
	al := newAccessLog(log)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// One allocation holds the request's info, its status writer, the request-id header value
		// and the context node that carries the info (see reqState).
		rs := &reqState{Context: r.Context(), addr: resolveAddr(r, trusted)}
		ri := &rs.info
		ri.id = newRequestID()
		rs.idHeader[0] = ri.id
		w.Header()[RequestIDHeader] = rs.idHeader[:] // the key is canonical already
		sw := &rs.sw
		sw.ResponseWriter = w
		// One request copy carrying both values (each WithContext allocates a whole *http.Request).
		r = r.WithContext(rs)
		defer func() {
			end := time.Now()
			elapsed := end.Sub(start)
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			metrics.ObserveRequest(ri.pattern, r.Method, status, elapsed)
			level := slog.LevelInfo
			if status >= 500 {
				level = slog.LevelWarn
			}
			e := accessEntry{id: ri.id, method: safeMethod(r.Method), route: ri.pattern, path: logPath(r),
				status: status, bytes: sw.bytes, elapsed: elapsed, addr: rs.addr, proto: r.Proto, hijacked: sw.hijacked}
			al.write(r.Context(), level, end, &e)
		}()
		next.ServeHTTP(sw, r)
	})
}

// logPath is the request path for the log: the escaped path only (the query string is dropped
// because it may hold a credential), capped in length.
func logPath(r *http.Request) string {
	p := r.URL.EscapedPath()
	if len(p) > 256 {
		p = p[:256] + "…"
	}
	return p
}

func safeMethod(m string) string {
	if len(m) > 16 {
		return m[:16]
	}
	return m
}

// recoverPanics turns a panic into a 500 JSON answer that reveals nothing but the request id; the
// stack goes to the log. http.ErrAbortHandler keeps its meaning (abort the connection silently).
func recoverPanics(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			id := RequestID(r.Context())
			log.LogAttrs(r.Context(), slog.LevelError, "panic",
				slog.String("request_id", id),
				slog.String("route", patternOf(r)),
				slog.String("panic", truncate(fmt.Sprint(v), 200)),
				slog.String("stack", string(debug.Stack())))
			if sw, ok := w.(*statusWriter); ok && (sw.status != 0 || sw.hijacked) {
				// The answer has started: the only honest thing left is to cut the connection.
				panic(http.ErrAbortHandler)
			}
			writeError(w, http.StatusInternalServerError, "server_error", "internal error (request id "+id+")")
		}()
		next.ServeHTTP(w, r)
	})
}

func patternOf(r *http.Request) string {
	if ri := infoOf(r.Context()); ri != nil {
		return ri.pattern
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// canonicalPath refuses non-canonical paths (dot segments, encoded slashes, backslashes, NUL)
// before any routing, so the route that matches is exactly the path an upstream sees.
func canonicalPath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := r.RequestURI
		if i := strings.IndexByte(raw, '?'); i >= 0 {
			raw = raw[:i]
		}
		// An absolute-form request target (GET http://host/path) is reduced to its path.
		if !strings.HasPrefix(raw, "/") && raw != "*" {
			if i := strings.Index(raw, "://"); i >= 0 {
				if j := strings.IndexByte(raw[i+3:], '/'); j >= 0 {
					raw = raw[i+3+j:]
				} else {
					raw = "/"
				}
			}
		}
		if err := httpx.CheckPath(raw); err != nil {
			e, _ := errs.As(err)
			writeError(w, http.StatusBadRequest, "invalid_request", e.Message)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// limitBody caps every request body; handlers that read more get an error (httpx maps it to
// body_too_large).
func limitBody(max int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, max)
		}
		next.ServeHTTP(w, r)
	})
}

// resolveAddr decides the client address: the TCP peer, or — only when the peer is a trusted
// proxy — the right-most X-Forwarded-For entry that is not itself a trusted proxy.
func resolveAddr(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || len(trusted) == 0 || !inPrefixes(peer.Unmap(), trusted) {
		return host
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for _, h := range strings.Split(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(hops[i])
		if err != nil {
			return host // a malformed hop: do not guess past it
		}
		if !inPrefixes(a.Unmap(), trusted) {
			return a.Unmap().String()
		}
	}
	return host
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseTrusted turns server.trusted_proxies (validated already) into prefixes.
func parseTrusted(list []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		} else if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	return out
}

// recordPattern wraps a mux so the pattern it matched reaches the access log and metrics. prefix
// is prepended for sub-muxes mounted under a stripped prefix (the admin API).
func recordPattern(prefix string, mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// ServeMux sets r.Pattern on the request it is given; read it even when the handler panics.
		defer func() {
			if ri := infoOf(r.Context()); ri != nil && ri.pattern == "" && r.Pattern != "" { // innermost mux wins
				ri.pattern = joinPattern(prefix, r.Pattern)
			}
		}()
		mux.ServeHTTP(w, r)
	})
}

// joinPattern puts prefix in front of a pattern's path: ("/admin/api/v1", "POST /clients") →
// "POST /admin/api/v1/clients".
func joinPattern(prefix, pattern string) string {
	if prefix == "" {
		return pattern
	}
	if method, path, ok := strings.Cut(pattern, " "); ok {
		return method + " " + prefix + path
	}
	return prefix + pattern
}

// writeError writes the server's own JSON error shape (OAuth 2 style).
func writeError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteError(w, status, code, desc)
}
