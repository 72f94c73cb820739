package gateway

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/posgate/posgate/client/identity"
	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/errs"
)

// DefaultUpstreamTimeout applies when gateway.upstream_timeout is 0.
const DefaultUpstreamTimeout = 30 * time.Second

// hkdfInfo separates the identity-signature key from every other key derived from the master key.
const hkdfInfo = "posgate gateway identity signature v1"

// SigningKey returns the HMAC key of X-Posgate-Signature: gateway.signing_secret (base64, at least
// 32 bytes) when set, else a key derived from the master key with HKDF-SHA256 — the same on every
// replica of a deployment, since they share the master key.
func SigningKey(cfg *config.Config, master []byte) ([]byte, error) {
	if s := cfg.Gateway.SigningSecret; s != "" {
		k, err := identity.DecodeKey(s)
		if err != nil {
			return nil, fmt.Errorf("gateway.signing_secret: %v (want base64 of at least %d random bytes)", err, identity.MinKeyBytes)
		}
		if len(k) < identity.MinKeyBytes {
			return nil, fmt.Errorf("gateway.signing_secret: %d bytes after base64 decoding; at least %d are required", len(k), identity.MinKeyBytes)
		}
		return k, nil
	}
	if len(master) < 32 {
		return nil, errors.New("gateway: no gateway.signing_secret and no master key to derive the identity-signature key from")
	}
	return hkdf.Key(sha256.New, master, nil, hkdfInfo, 32)
}

// Forwarder is the gateway's reverse proxy: it sends an authenticated request to a named upstream
// with the caller's credentials stripped and signed identity headers added. It implements
// app.Forwarder, so dialects that forward calls themselves (chef data calls) share it.
type Forwarder struct {
	log       *slog.Logger
	clock     clock.Clock
	signer    *identity.Signer
	transport *http.Transport
	upstreams map[string]*upstream

	hmu     sync.RWMutex
	headers map[*auth.Principal]string // encoded X-Posgate-Principal of stable principals
}

type upstream struct {
	name   string
	target *url.URL
	proxy  *httputil.ReverseProxy
}

var _ app.Forwarder = (*Forwarder)(nil)

// NewForwarder builds the forwarder for cfg.Upstreams. master is the deployment's master key, used
// only when gateway.signing_secret is empty (see SigningKey). An upstream must be an absolute
// http(s) URL with a host and no path, query, fragment or user info: the request path is forwarded
// unchanged.
func NewForwarder(cfg *config.Config, master []byte, log *slog.Logger, clk clock.Clock) (*Forwarder, error) {
	if log == nil {
		log = slog.Default()
	}
	if clk == nil {
		clk = clock.System{}
	}
	key, err := SigningKey(cfg, master)
	if err != nil {
		return nil, err
	}
	if cfg.Gateway.UpstreamTimeout < 0 {
		return nil, fmt.Errorf("gateway.upstream_timeout: %d is negative; want seconds > 0 (0 = default %d)", cfg.Gateway.UpstreamTimeout, int(DefaultUpstreamTimeout/time.Second))
	}
	timeout := config.Seconds(cfg.Gateway.UpstreamTimeout)
	if timeout == 0 {
		timeout = DefaultUpstreamTimeout
	}
	signer, err := identity.NewSigner(key)
	if err != nil {
		return nil, err
	}
	f := &Forwarder{
		log:       log,
		clock:     clk,
		signer:    signer,
		transport: NewTransport(timeout),
		upstreams: map[string]*upstream{},
		headers:   map[*auth.Principal]string{},
	}
	names := make([]string, 0, len(cfg.Upstreams))
	for n := range cfg.Upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		u, err := parseUpstream(name, cfg.Upstreams[name])
		if err != nil {
			return nil, err
		}
		f.upstreams[name] = f.newUpstream(name, u)
	}
	return f, nil
}

func parseUpstream(name, raw string) (*url.URL, error) {
	bad := func(why string) error {
		return fmt.Errorf("upstreams.%s: %q %s; want an absolute URL such as \"http://127.0.0.1:9000\"", name, raw, why)
	}
	if name == "" {
		return nil, fmt.Errorf("upstreams: an upstream has an empty name")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, bad("is not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, bad("must use http or https")
	case u.Host == "" || u.Hostname() == "":
		return nil, bad("has no host")
	case u.User != nil:
		return nil, bad("must not carry user info")
	case u.Path != "" && u.Path != "/":
		return nil, bad("must not have a path (the request path is forwarded unchanged)")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, bad("must not have a query or fragment")
	}
	if p := u.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil {
			return nil, bad("has an invalid port")
		}
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// NewTransport is the upstream transport, shared by every upstream: keep-alive with pools sized
// for a busy gateway (the default of 2 idle connections per host would make every burst open new
// connections), no environment proxy (the upstream is what the config says, nothing else),
// bounded dial, TLS and response-header sizes. responseTimeout (gateway.upstream_timeout) bounds
// the wait for the upstream's response headers once the request is sent — a timeout → 504; a
// streamed body after that runs as long as the server's write timeout allows (net/http arms one
// timer per request for it). Exported so bench/gateway's bare proxy runs on the same transport.
func NewTransport(responseTimeout time.Duration) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  1 * time.Second,
		ResponseHeaderTimeout:  responseTimeout,
		MaxResponseHeaderBytes: 1 << 20,
	}
}

func (f *Forwarder) newUpstream(name string, target *url.URL) *upstream {
	up := &upstream{name: name, target: target}
	up.proxy = &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { f.rewrite(up, pr) },
		Transport:      f.transport,
		ModifyResponse: f.modifyResponse,
		ErrorHandler:   f.errorHandler,
		BufferPool:     bufferPool{},
		ErrorLog:       slog.NewLogLogger(f.log.Handler(), slog.LevelDebug),
		// FlushInterval 0: a response of known length is copied with buffering; ReverseProxy flushes
		// at once (as if -1) for streaming answers — unknown length or text/event-stream.
	}
	return up
}

// Close releases idle upstream connections.
func (f *Forwarder) Close() { f.transport.CloseIdleConnections() }

// Upstreams lists the configured upstream names, sorted.
func (f *Forwarder) Upstreams() []string {
	out := make([]string, 0, len(f.upstreams))
	for n := range f.upstreams {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// HasUpstream reports whether name is configured.
func (f *Forwarder) HasUpstream(name string) bool { _, ok := f.upstreams[name]; return ok }

// fwdState travels with one forwarded request (in its context) to Rewrite, ModifyResponse and
// ErrorHandler.
//
// fwdState is itself the context of the request handed to the ReverseProxy (it embeds the caller's
// context and answers Value(stateKey{}) with itself): one allocation per request instead of a state
// plus a context.WithValue node. hdr backs the outbound X-Forwarded-* and identity header values.
type fwdState struct {
	context.Context
	route     string
	principal string // X-Posgate-Principal value
	writeErr  errorWriter
	onSuccess func() // a 2xx answer arrived (before it is written to the caller)
	onRefused func() // the upstream refused the call: a non-2xx answer, or it was never sent
	start     time.Time
	outcome   string
	hdr       [5]string
}

type stateKey struct{}

// errorWriter writes an error in the caller's dialect: an auth.Authenticator, or a plain function
// (writeErrFunc). Passing the authenticator itself instead of its method value a.WriteError saves
// a closure allocation per request.
type errorWriter interface {
	WriteError(w http.ResponseWriter, r *http.Request, err error)
}

type writeErrFunc func(http.ResponseWriter, *http.Request, error)

func (f writeErrFunc) WriteError(w http.ResponseWriter, r *http.Request, err error) { f(w, r, err) }

// Value answers stateKey{} with the state itself and delegates everything else.
func (st *fwdState) Value(key any) any {
	if key == (stateKey{}) {
		return st
	}
	return st.Context.Value(key)
}

// Forward implements app.Forwarder.
func (f *Forwarder) Forward(w http.ResponseWriter, r *http.Request, upstreamName string, p *auth.Principal,
	writeErr func(http.ResponseWriter, *http.Request, error), onSuccess func()) {
	route := r.Pattern
	if route == "" {
		route = "upstream:" + upstreamName
	}
	f.forward(w, r, upstreamName, route, p, false, writeErrFunc(writeErr), onSuccess, nil)
}

// forward returns the outcome label (for metrics).
// stable says p is a shared, immutable principal its authenticator hands out again for the same
// credential (see StablePrincipals), so its encoded header can be kept. onSuccess runs when a 2xx
// answer arrives, onRefused when the upstream answered otherwise or the request certainly never
// reached it (no connection); neither runs when the outcome is unknown (timeout, connection lost
// after sending, caller gone). Both run before anything is written to the caller.
func (f *Forwarder) forward(w http.ResponseWriter, r *http.Request, upstreamName, route string, p *auth.Principal, stable bool,
	writeErr errorWriter, onSuccess, onRefused func()) string {
	up, ok := f.upstreams[upstreamName]
	if !ok || p == nil {
		f.log.LogAttrs(r.Context(), slog.LevelError, "gateway: forward to an unknown upstream or without a principal",
			slog.String("upstream", upstreamName), slog.String("route", route))
		if onRefused != nil {
			onRefused()
		}
		writeErr.WriteError(w, r, errs.New(errs.Internal, "server_error", "the gateway is misconfigured"))
		return "misconfigured"
	}
	principal, err := f.principalHeader(p, stable)
	if err != nil {
		f.log.LogAttrs(r.Context(), slog.LevelError, "gateway: principal does not encode", slog.String("error", err.Error()))
		if onRefused != nil {
			onRefused()
		}
		writeErr.WriteError(w, r, errs.Wrap(errs.Internal, "server_error", "internal error", err))
		return "misconfigured"
	}
	if _, ok := r.Header["Upgrade"]; ok {
		// No ordinary route upgrades a connection: an upstream that accepted an Upgrade (h2c,
		// websocket) would turn it into a tunnel no later request on it is checked for. The
		// request goes on as plain HTTP.
		r = r.Clone(r.Context())
		r.Header.Del("Upgrade")
		r.Header.Del("Connection")
	}
	st := &fwdState{
		Context:   r.Context(),
		route:     route,
		principal: principal,
		writeErr:  writeErr,
		onSuccess: onSuccess,
		onRefused: onRefused,
		start:     time.Now(),
		outcome:   "forwarded",
	}
	up.proxy.ServeHTTP(w, r.WithContext(st))
	return st.outcome
}

func stateOf(r *http.Request) *fwdState {
	st, _ := r.Context().Value(stateKey{}).(*fwdState)
	return st
}

// rewrite builds the outbound request: the target upstream with the path unchanged, no caller
// credential, no caller-supplied X-Posgate-* or forwarding headers, our own X-Forwarded-* and the
// signed identity. (ReverseProxy has already removed hop-by-hop headers and, in Rewrite mode,
// Forwarded and X-Forwarded-*.)
func (f *Forwarder) rewrite(up *upstream, pr *httputil.ProxyRequest) {
	st := stateOf(pr.In)
	pr.SetURL(up.target)
	// The query exactly as the caller sent it (the gateway refused any it cannot parse):
	// ReverseProxy re-encodes a query holding ';' or a bad escape, which reorders and drops
	// parameters the routes' checks saw, and the signature must cover what the upstream reads.
	if q := pr.In.URL.RawQuery; q != "" {
		if t := up.target.RawQuery; t != "" {
			q = t + "&" + q
		}
		pr.Out.URL.RawQuery = q
	}
	stripInbound(pr.Out.Header)

	// One backing array for the five values (keys are already canonical), kept in the request's
	// state: no allocation for them on the request path.
	var vals []string
	if st != nil {
		vals = st.hdr[:]
	} else {
		vals = make([]string, 5)
	}
	vals[0] = auth.Addr(pr.In)
	vals[1] = pr.In.Host
	vals[2] = "http"
	if pr.In.TLS != nil {
		vals[2] = "https"
	}
	h := pr.Out.Header
	h["X-Forwarded-For"] = vals[0:1:1]
	h["X-Forwarded-Host"] = vals[1:2:2]
	h["X-Forwarded-Proto"] = vals[2:3:3]
	if st == nil {
		return // never: forward always sets it; the upstream then refuses the unsigned request
	}
	vals[3] = st.principal
	vals[4] = f.signer.Sign(pr.Out.Method, pr.Out.URL.RequestURI(), f.clock.Now(), st.principal)
	h[identity.HeaderPrincipal] = vals[3:4:4]
	h[identity.HeaderSignature] = vals[4:5:5]
}

// maxCachedHeaders bounds the principal-header cache; when full it starts over.
const maxCachedHeaders = 10_000

// principalHeader encodes p, or returns the header encoded for the same shared principal before.
func (f *Forwarder) principalHeader(p *auth.Principal, stable bool) (string, error) {
	if !stable {
		return encodePrincipal(p)
	}
	f.hmu.RLock()
	h, ok := f.headers[p]
	f.hmu.RUnlock()
	if ok {
		return h, nil
	}
	h, err := encodePrincipal(p)
	if err != nil {
		return "", err
	}
	f.hmu.Lock()
	if len(f.headers) >= maxCachedHeaders {
		clear(f.headers)
	}
	f.headers[p] = h
	f.hmu.Unlock()
	return h, nil
}

// stripInbound removes the caller's credentials (cookies included) and anything that could
// impersonate the gateway or a trusted proxy (every X-Forwarded-*, not only the three
// ReverseProxy knows, and X-Real-IP), and every header whose name contains '_': CGI-style
// upstreams read `X_Posgate_Principal` as X-Posgate-Principal (gateway routes refuse such
// requests before this; dialects forwarding with Forward get the same protection). Header names
// are compared case-insensitively: a Header map built by hand may hold keys that are not in
// canonical form.
func stripInbound(h http.Header) {
	for k := range h {
		if isStrippedHeader(k) {
			delete(h, k)
		}
	}
}

func isStrippedHeader(k string) bool {
	if strings.IndexByte(k, '_') >= 0 {
		return true
	}
	switch len(k) {
	case len("Authorization"):
		if strings.EqualFold(k, "Authorization") {
			return true
		}
	case len("apikey"): // = len("vendor") = len("Cookie")
		if strings.EqualFold(k, "apikey") || strings.EqualFold(k, "vendor") || strings.EqualFold(k, "Cookie") {
			return true
		}
	case len("X-Real-Ip"):
		if strings.EqualFold(k, "X-Real-Ip") {
			return true
		}
	case len("Proxy-Authorization"):
		if strings.EqualFold(k, "Proxy-Authorization") {
			return true
		}
	}
	return hasPrefixFold(k, "X-Posgate-") || hasPrefixFold(k, "X-Forwarded-")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// modifyResponse runs once the upstream's response headers are in, before anything is written to
// the caller: so a consuming route's token is revoked before the caller can see the answer.
func (f *Forwarder) modifyResponse(resp *http.Response) error {
	st := stateOf(resp.Request)
	if st == nil {
		return nil
	}
	observeUpstream(st.route, time.Since(st.start))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if st.onSuccess != nil {
			st.onSuccess()
		}
	} else if st.onRefused != nil {
		st.onRefused()
	}
	return nil
}

// errorHandler maps transport failures to the route's dialect: 504 for a timeout, 502 otherwise.
func (f *Forwarder) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r)
	if st == nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	route := st.route
	switch {
	case isTimeout(err):
		st.outcome = "upstream_timeout"
		observeUpstream(route, time.Since(st.start))
		f.log.LogAttrs(r.Context(), slog.LevelWarn, "gateway: upstream timeout", slog.String("route", route))
		st.writeErr.WriteError(w, r, errs.Wrap(errs.Unavailable, "upstream_timeout", "the upstream did not answer in time", err))
	case r.Context().Err() != nil && errors.Is(err, context.Canceled):
		// The caller went away; nobody reads what we would write.
		st.outcome = "client_closed"
		w.WriteHeader(499)
	default:
		st.outcome = "upstream_unreachable"
		if isDialError(err) && st.onRefused != nil {
			st.onRefused() // no connection: the upstream never saw the request
		}
		observeUpstream(route, time.Since(st.start))
		f.log.LogAttrs(r.Context(), slog.LevelWarn, "gateway: upstream unreachable", slog.String("route", route), slog.String("error", safeErr(err)))
		st.writeErr.WriteError(w, r, errs.Wrap(errs.Unavailable, "upstream_unreachable", "the upstream could not be reached", err))
	}
}

// isTimeout reports whether err is the upstream not answering in time (the transport's
// ResponseHeaderTimeout, or a timeout while sending the request) — not a failure to connect,
// which is "unreachable".
func isTimeout(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isDialError reports whether err is a failure to connect (name resolution included): the request
// was certainly not sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// safeErr renders a transport error for the log. Transport errors name the upstream's address,
// never the request's headers or query.
func safeErr(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + ue.Err.Error()
	}
	return err.Error()
}

// bufferPool recycles the 32 KiB copy buffers of ReverseProxy.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
