// Package orderpay is the POS side of PowerEPOS "Order N Pay" against posgate: a POS
// authenticates with its outlet's shared secret, opens a websocket to posgate, and answers the
// requests the integrator sends through it (get the open orders, update an order, payments…).
//
// A Client does the whole life of that connection:
//
//   - it authenticates (POST /api/powerepos/v1/auth with ProviderOutletID, POSRemoteID and
//     AuthSecret) and gets an AccessToken, a ticket good for exactly one websocket upgrade — so it
//     authenticates again before every connection, including every reconnection;
//   - it opens wss://host/ws?token=<ticket>, answers the server's pings, and pings the server
//     itself so a silently dead link is noticed;
//   - it hands each request to a Handler and sends back the Answer under the request's RequestID;
//   - a RequestID it has already answered (the server re-delivers after a lost connection) gets
//     the same answer again without calling the Handler a second time;
//   - when the connection drops it reconnects after a capped, jittered exponential backoff.
//
// Run returns only when its context is cancelled or when retrying cannot help: the credentials
// are refused (ErrBadRequest, ErrUnauthorized), posgate's TLS certificate is not trusted
// (ErrUntrustedCertificate), the outlet is disabled (ErrDisabled), or another
// connection of the same outlet replaced this one (ErrReplaced: two POSes configured with one
// outlet would otherwise take the socket from each other forever; the newer one keeps it).
//
// How a connection ended decides what comes next: a close with 1000 (normal), 1001 (posgate
// shutting down: another replica will take the POS), 1011, 4001 (the ticket or the session is no
// longer valid) or any other code, a refused upgrade, a dropped link or an unanswered ping all
// lead to a new authentication and a new connection after the backoff; 4003 (outlet disabled)
// stops Run with ErrDisabled and 4009 (replaced) with ErrReplaced. A 429 or 503 from posgate is
// retried no sooner than its Retry-After.
//
// The AccessToken travels in the websocket URL's query, so this package never logs it, never
// puts it in an error, and never follows a redirect with it.
package orderpay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/client/internal/socket"
)

// AuthPath is the authentication endpoint, relative to the base URL.
const AuthPath = "/api/powerepos/v1/auth"

// SocketPath is where the client opens the websocket (posgate also accepts "/").
const SocketPath = "/ws"

// Well-known message types; others are passed through as integers.
const (
	GetUserFromPIN = 0
	GetOpenOrders  = 1
	UpdateOrder    = 12
)

// Defaults for the zero values of Client's fields.
const (
	DefaultMinBackoff     = 500 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultPingInterval   = 30 * time.Second
	DefaultPingTimeout    = 10 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	DefaultHandlerTimeout = 30 * time.Second
	DefaultMaxMessage     = 1 << 20
	DefaultDedupEntries   = 1024
	DefaultDedupBytes     = 8 << 20
)

// maxAuthBody caps the auth endpoint's answer; maxTicket caps the ticket it contains.
const (
	maxAuthBody = 64 << 10
	maxTicket   = 4096
)

// Request is one request from the integrator, as posgate sends it.
type Request struct {
	ProviderID     int64           `json:"ProviderID"`
	ProviderName   string          `json:"ProviderName"`
	DeviceID       string          `json:"DeviceID"`
	UserIdentifier string          `json:"UserIdentifier"`
	MessageType    int             `json:"MessageType"`
	Payload        json.RawMessage `json:"Payload"`
	RequestID      string          `json:"RequestID"`
}

// Answer is the POS's answer to a Request. ResultCode 0 is success; a non-zero ResultCode with an
// ErrorMessage is still an answer, passed to the integrator as it is. Payload is marshalled with
// encoding/json (a json.RawMessage is sent unchanged; nil is sent as null).
type Answer struct {
	ResultCode   int
	ErrorMessage string // sent as null when empty
	Payload      any
}

// ResultHandlerFailed is the ResultCode this client answers with when the Handler panics or its
// Payload cannot be marshalled. It is this package's choice, not a vendor-documented code.
const ResultHandlerFailed = 1

// Handler answers requests. Answer is called once per RequestID (see the package comment); ctx
// is cancelled after Client.HandlerTimeout or when Run stops. With Client.Concurrency 1 (the
// default) requests are answered one at a time in the order they arrived.
type Handler interface {
	Answer(ctx context.Context, req *Request) Answer
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request) Answer

// Answer calls f.
func (f HandlerFunc) Answer(ctx context.Context, req *Request) Answer { return f(ctx, req) }

// Credentials identify an outlet to posgate.
type Credentials struct {
	ProviderOutletID string // the integrator's id for the outlet
	POSRemoteID      string // PowerEPOS's id for the outlet
	AuthSecret       string // the outlet's shared secret
}

// Client is a POS connected to posgate. Set the fields, then call Run; do not change them while
// Run runs. Only URL, Credentials and Handler are required.
type Client struct {
	// URL is posgate's base URL, e.g. "https://posgate.example.com". Plain http is refused for a
	// host other than loopback unless AllowPlainHTTP is set.
	URL            string
	AllowPlainHTTP bool
	Credentials    Credentials
	Handler        Handler

	// HTTPClient makes the auth call and the upgrade (its Transport's TLS settings apply to
	// both); nil means http.DefaultClient. Its Timeout, if any, bounds the auth call and the
	// upgrade, not the life of the connection.
	HTTPClient *http.Client

	MinBackoff, MaxBackoff time.Duration // reconnection delay range; see package comment
	PingInterval           time.Duration // how often the client pings the server
	PingTimeout            time.Duration // a ping not answered in this time closes the connection
	WriteTimeout           time.Duration // for each answer written
	HandlerTimeout         time.Duration // the Handler's context deadline
	MaxMessage             int64         // largest frame accepted from the server
	Concurrency            int           // requests answered at once; default 1 (in order)
	DedupEntries           int           // answers remembered for re-delivered RequestIDs
	DedupBytes             int           // … and their total size

	// Logger receives connection events (never the ticket nor request payloads); nil discards.
	Logger *slog.Logger

	sleep func(context.Context, time.Duration) error // tests observe the backoff through it
	now   func() time.Time

	mu       sync.Mutex
	answered *socket.Recent[[]byte]
	pending  map[string]*pending
}

// pending is a request being answered; sessions that asked for it while it runs wait for it.
type pending struct {
	waiters []*session
}

// Sentinel errors; the errors Run and Authenticate return match them with errors.Is.
var (
	ErrBadRequest   = errors.New("orderpay: the auth request was refused as malformed")
	ErrUnauthorized = errors.New("orderpay: the outlet credentials were refused")
	ErrDisabled     = errors.New("orderpay: the outlet is disabled")
	ErrThrottled    = errors.New("orderpay: too many attempts; retry later")
	ErrUnavailable  = errors.New("orderpay: posgate is unavailable")
	ErrReplaced     = errors.New("orderpay: replaced by a newer connection of the same outlet")
	// ErrUntrustedCertificate: posgate's TLS certificate could not be verified (configure the
	// HTTPClient's RootCAs); retrying would not help.
	ErrUntrustedCertificate = socket.ErrUntrustedCertificate
)

// AuthError is a refused authentication.
type AuthError struct {
	StatusCode int
	Message    string        // the server's ErrorMessage, made printable
	RetryAfter time.Duration // from Retry-After (429, 503)
}

func (e *AuthError) Error() string {
	s := fmt.Sprintf("orderpay: authentication refused: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return s
}

// Unwrap returns the sentinel matching the status code.
func (e *AuthError) Unwrap() error {
	switch {
	case e.StatusCode == http.StatusBadRequest:
		return ErrBadRequest
	case e.StatusCode == http.StatusUnauthorized:
		return ErrUnauthorized
	case e.StatusCode == http.StatusForbidden:
		return ErrDisabled
	case e.StatusCode == http.StatusTooManyRequests:
		return ErrThrottled
	case e.StatusCode >= 500:
		return ErrUnavailable
	}
	return nil
}

// UpgradeError is a websocket upgrade posgate refused (a ticket it did not accept, or an
// overloaded server). Run authenticates again and retries.
type UpgradeError struct {
	StatusCode int
	Message    string // the server's ErrorMessage, made printable
	RetryAfter time.Duration
}

func (e *UpgradeError) Error() string {
	s := fmt.Sprintf("orderpay: websocket upgrade refused: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

func retryAfter(err error) time.Duration {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	var ue *UpgradeError
	if errors.As(err, &ue) {
		return ue.RetryAfter
	}
	return 0
}

// CloseError is a connection posgate closed with a status code.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("orderpay: connection closed by posgate: %d %s", e.Code, e.Reason)
}

// Unwrap maps the codes that stop Run to their sentinels: 4003 ErrDisabled, 4009 ErrReplaced.
func (e *CloseError) Unwrap() error {
	switch e.Code {
	case 4003:
		return ErrDisabled
	case 4009:
		return ErrReplaced
	}
	return nil
}

// Authenticate exchanges the credentials for an AccessToken: a single-use ticket for one
// websocket upgrade. Run calls it before every connection; it is exported for tools and tests.
func (c *Client) Authenticate(ctx context.Context) (string, error) {
	base, err := c.base()
	if err != nil {
		return "", err
	}
	return c.authenticate(ctx, base)
}

func (c *Client) authenticate(ctx context.Context, base *url.URL) (string, error) {
	body, err := json.Marshal(map[string]string{
		"ProviderOutletID": c.Credentials.ProviderOutletID,
		"POSRemoteID":      c.Credentials.POSRemoteID,
		"AuthSecret":       c.Credentials.AuthSecret,
	})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, socket.Endpoint(base, AuthPath, nil, false), bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	hc := *c.httpClient()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return socket.ErrRedirect }
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("orderpay: authenticating: %w", socket.Redact(err, c.Credentials.AuthSecret))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAuthBody+1))
	if err != nil {
		return "", fmt.Errorf("orderpay: reading the auth answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ ErrorMessage string }
		_ = json.Unmarshal(data, &e)
		return "", &AuthError{StatusCode: resp.StatusCode, Message: socket.Printable(e.ErrorMessage, 200), RetryAfter: socket.RetryAfter(resp.Header)}
	}
	if len(data) > maxAuthBody {
		return "", errors.New("orderpay: the auth answer is too large")
	}
	var ok struct{ AccessToken string }
	if err := json.Unmarshal(data, &ok); err != nil || ok.AccessToken == "" || len(ok.AccessToken) > maxTicket {
		return "", errors.New("orderpay: the auth answer has no usable AccessToken")
	}
	return ok.AccessToken, nil
}

func (c *Client) base() (*url.URL, error) {
	u, err := socket.CheckBaseURL(c.URL, c.AllowPlainHTTP)
	if err != nil {
		return nil, fmt.Errorf("orderpay: %w", err)
	}
	return u, nil
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return http.DefaultClient
}

func (c *Client) log() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Run connects and answers requests until ctx is cancelled (it then returns ctx.Err()) or until
// retrying cannot help (see the package comment); it reconnects after every other failure.
// Run must not be called again while it runs.
func (c *Client) Run(ctx context.Context) error {
	base, err := c.base()
	if err != nil {
		return err
	}
	if c.Handler == nil {
		return errors.New("orderpay: Client.Handler is nil")
	}
	cr := c.Credentials
	if cr.ProviderOutletID == "" || cr.POSRemoteID == "" || cr.AuthSecret == "" {
		return errors.New("orderpay: ProviderOutletID, POSRemoteID and AuthSecret are all required")
	}
	sleep := c.sleep
	if sleep == nil {
		sleep = socket.Sleep
	}
	c.mu.Lock()
	if c.answered == nil {
		c.answered = socket.NewRecent[[]byte](socket.OrDefault(c.DedupEntries, DefaultDedupEntries), socket.OrDefault(c.DedupBytes, DefaultDedupBytes))
		c.pending = map[string]*pending{}
	}
	c.mu.Unlock()

	work := make(chan job, 256)
	var workers sync.WaitGroup
	runCtx, stopWorkers := context.WithCancel(ctx)
	for range socket.OrDefault(c.Concurrency, 1) {
		workers.Add(1)
		go func() {
			defer workers.Done()
			c.worker(runCtx, work)
		}()
	}
	defer func() {
		stopWorkers()
		workers.Wait()
		// Requests queued but never answered are forgotten, so a later Run answers them when
		// posgate re-delivers them.
		c.mu.Lock()
		clear(c.pending)
		c.mu.Unlock()
	}()

	retry := socket.Retry{Backoff: socket.Backoff{Min: socket.OrDefault(c.MinBackoff, DefaultMinBackoff), Max: socket.OrDefault(c.MaxBackoff, DefaultMaxBackoff)}}
	log := c.log()
	for {
		up, err := c.connectOnce(ctx, base, work)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if permanent(err) {
			log.Error("orderpay: stopping", "err", err)
			return err
		}
		wait := retry.Next(up, retryAfter(err))
		log.Warn("orderpay: disconnected; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// permanent reports whether err means retrying cannot succeed without a person's action.
func permanent(err error) bool {
	return errors.Is(err, ErrBadRequest) || errors.Is(err, ErrUnauthorized) ||
		errors.Is(err, ErrDisabled) || errors.Is(err, ErrReplaced) || errors.Is(err, ErrUntrustedCertificate)
}

type job struct {
	req *Request
	s   *session
}

// session is one websocket connection.
type session struct {
	conn         *websocket.Conn
	writeTimeout time.Duration
}

func (s *session) send(frame []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.writeTimeout)
	defer cancel()
	return s.conn.Write(ctx, websocket.MessageText, frame)
}

// connectOnce authenticates, connects and serves one connection until it ends; it returns how
// long the connection was up and why it ended.
func (c *Client) connectOnce(ctx context.Context, base *url.URL, work chan<- job) (time.Duration, error) {
	ticket, err := c.authenticate(ctx, base)
	if err != nil {
		return 0, err
	}
	now := c.now
	if now == nil {
		now = time.Now
	}
	conn, ref, err := socket.Dial(ctx, socket.Endpoint(base, SocketPath, url.Values{"token": {ticket}}, true), ticket,
		c.httpClient(), socket.OrDefault(c.MaxMessage, DefaultMaxMessage)+1024, now)
	if err != nil {
		if ref != nil {
			var e struct{ ErrorMessage string }
			_ = json.Unmarshal(ref.Body, &e)
			return 0, &UpgradeError{StatusCode: ref.StatusCode, Message: socket.Printable(e.ErrorMessage, 200), RetryAfter: ref.RetryAfter}
		}
		return 0, fmt.Errorf("orderpay: connecting: %w", err)
	}
	start := time.Now()
	log := c.log()
	log.Info("orderpay: connected", "outlet", c.Credentials.ProviderOutletID)
	s := &session{conn: conn, writeTimeout: socket.OrDefault(c.WriteTimeout, DefaultWriteTimeout)}

	connCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancelling Run closes the socket properly (a read whose context ends only drops it).
	stop := context.AfterFunc(ctx, func() { conn.Close(websocket.StatusGoingAway, "POS stopping") })
	defer stop()
	go c.pinger(connCtx, conn)

	err = c.read(connCtx, ctx.Done(), s, work)
	conn.CloseNow()
	return time.Since(start), err
}

// pinger pings the server; a ping unanswered within PingTimeout closes the connection, which
// ends the reader and so leads to a reconnection.
func (c *Client) pinger(ctx context.Context, conn *websocket.Conn) {
	t := time.NewTicker(socket.OrDefault(c.PingInterval, DefaultPingInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, socket.OrDefault(c.PingTimeout, DefaultPingTimeout))
		err := conn.Ping(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			c.log().Warn("orderpay: ping not answered; dropping the connection")
			conn.CloseNow()
			return
		}
	}
}

// read reads frames until the connection ends and returns why it ended; stop is Run's end, which
// unblocks a reader waiting for room in the work queue.
func (c *Client) read(ctx context.Context, stop <-chan struct{}, s *session, work chan<- job) error {
	log := c.log()
	for {
		typ, data, err := s.conn.Read(ctx)
		if err != nil {
			if code := websocket.CloseStatus(err); code != -1 {
				var ce websocket.CloseError
				errors.As(err, &ce)
				return &CloseError{Code: int(code), Reason: socket.Printable(ce.Reason, 123)}
			}
			return fmt.Errorf("orderpay: connection lost: %w", err)
		}
		if typ != websocket.MessageText {
			log.Warn("orderpay: ignored a binary frame", "bytes", len(data))
			continue
		}
		req, err := DecodeRequest(data)
		if err != nil {
			log.Warn("orderpay: ignored a malformed request", "err", err, "bytes", len(data))
			continue
		}
		if !c.dispatch(stop, req, s, work) {
			return errors.New("orderpay: stopping")
		}
	}
}

// dispatch answers a re-delivered RequestID from memory, joins one being answered, or queues a
// new one for the workers; false when Run stopped while it waited for room in the queue.
func (c *Client) dispatch(stop <-chan struct{}, req *Request, s *session, work chan<- job) bool {
	c.mu.Lock()
	if frame, ok := c.answered.Get(req.RequestID); ok {
		c.mu.Unlock()
		c.log().Info("orderpay: re-delivered request answered again", "request_id", req.RequestID)
		if err := s.send(frame); err != nil {
			c.log().Warn("orderpay: could not send an answer", "request_id", req.RequestID, "err", err)
		}
		return true
	}
	if p, ok := c.pending[req.RequestID]; ok {
		for _, w := range p.waiters {
			if w == s {
				c.mu.Unlock()
				return true
			}
		}
		p.waiters = append(p.waiters, s)
		c.mu.Unlock()
		return true
	}
	c.pending[req.RequestID] = &pending{waiters: []*session{s}}
	c.mu.Unlock()
	select {
	case work <- job{req: req, s: s}:
		return true
	case <-stop:
		c.mu.Lock()
		delete(c.pending, req.RequestID)
		c.mu.Unlock()
		return false
	}
}

func (c *Client) worker(ctx context.Context, work <-chan job) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-work:
			frame := c.answer(ctx, j.req)
			if ctx.Err() != nil {
				// Run is stopping: an answer made under a cancelled context is not worth
				// remembering, and the connection it would go to is closing.
				return
			}
			c.mu.Lock()
			p := c.pending[j.req.RequestID]
			delete(c.pending, j.req.RequestID)
			c.answered.Put(j.req.RequestID, frame, len(frame)+len(j.req.RequestID))
			c.mu.Unlock()
			if p == nil {
				continue
			}
			for _, s := range p.waiters {
				if err := s.send(frame); err != nil {
					// The connection it came on is gone; the server re-delivers the request
					// on the next one and gets this answer from memory.
					c.log().Warn("orderpay: could not send an answer", "request_id", j.req.RequestID, "err", err)
				}
			}
		}
	}
}

// answer calls the Handler and encodes its Answer as the frame to send.
func (c *Client) answer(ctx context.Context, req *Request) (frame []byte) {
	hctx, cancel := context.WithTimeout(ctx, socket.OrDefault(c.HandlerTimeout, DefaultHandlerTimeout))
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			c.log().Error("orderpay: the handler panicked", "request_id", req.RequestID, "message_type", req.MessageType, "panic", fmt.Sprint(r))
			frame = encodeAnswer(req, Answer{ResultCode: ResultHandlerFailed, ErrorMessage: "the POS failed to process the request"})
		}
	}()
	a := c.Handler.Answer(hctx, req)
	return encodeAnswer(req, a)
}

// wireAnswer is the answer as sent.
type wireAnswer struct {
	RequestID    string          `json:"RequestID"`
	ResultCode   int             `json:"ResultCode"`
	ErrorMessage *string         `json:"ErrorMessage"`
	MessageType  int             `json:"MessageType"`
	Payload      json.RawMessage `json:"Payload"`
}

func encodeAnswer(req *Request, a Answer) []byte {
	w := wireAnswer{RequestID: req.RequestID, ResultCode: a.ResultCode, MessageType: req.MessageType}
	if a.ErrorMessage != "" {
		w.ErrorMessage = &a.ErrorMessage
	}
	payload, err := json.Marshal(a.Payload)
	if err != nil {
		msg := "the POS could not encode its answer"
		w.ResultCode, w.ErrorMessage, payload = ResultHandlerFailed, &msg, nil
	}
	w.Payload = payload
	frame, err := json.Marshal(w)
	if err != nil {
		panic("orderpay: encoding an answer: " + err.Error()) // every field is marshalable
	}
	return frame
}

// Limits on a request's fields, as the protocol states them.
const (
	MaxRequestID      = 256
	MaxProviderName   = 64
	MaxDeviceID       = 64
	MaxUserIdentifier = 36
)

// DecodeRequest parses a request frame from posgate. Field names match case-insensitively;
// RequestID (1–256 bytes) and an integer MessageType are required, the documented length limits
// are enforced. Payload is kept as sent (nil when absent or null).
func DecodeRequest(data []byte) (*Request, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw struct {
		ProviderID     json.Number
		ProviderName   string
		DeviceID       string
		UserIdentifier string
		MessageType    *json.Number
		Payload        json.RawMessage
		RequestID      string
	}
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("not a request object: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the request object")
	}
	switch {
	case raw.RequestID == "":
		return nil, errors.New("no RequestID")
	case len(raw.RequestID) > MaxRequestID:
		return nil, errors.New("RequestID longer than 256 bytes")
	case raw.MessageType == nil:
		return nil, errors.New("no MessageType")
	case len(raw.ProviderName) > MaxProviderName, len(raw.DeviceID) > MaxDeviceID, len(raw.UserIdentifier) > MaxUserIdentifier:
		return nil, errors.New("a field is longer than the protocol allows")
	}
	mt, err := strconv.ParseInt(raw.MessageType.String(), 10, 32)
	if err != nil {
		return nil, errors.New("MessageType is not an integer")
	}
	r := &Request{ProviderName: raw.ProviderName, DeviceID: raw.DeviceID, UserIdentifier: raw.UserIdentifier,
		MessageType: int(mt), RequestID: raw.RequestID}
	if raw.ProviderID != "" {
		if r.ProviderID, err = strconv.ParseInt(raw.ProviderID.String(), 10, 64); err != nil {
			return nil, errors.New("ProviderID is not an integer")
		}
	}
	if p := bytes.TrimSpace(raw.Payload); len(p) > 0 && !bytes.Equal(p, []byte("null")) {
		r.Payload = p
	}
	return r, nil
}

// String describes r without its payload, for log lines.
func (r *Request) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "RequestID=%q MessageType=%d", r.RequestID, r.MessageType)
	if r.DeviceID != "" {
		fmt.Fprintf(&b, " DeviceID=%q", r.DeviceID)
	}
	return b.String()
}
