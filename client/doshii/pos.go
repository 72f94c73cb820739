package doshii

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
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/client/internal/socket"
	"github.com/posgate/posgate/client/tokensource"
)

// Socket paths, relative to the base URL.
const (
	POSSocketPath    = "/pos/socket"    // an on-premises POS: one location, its location token
	VendorSocketPath = "/vendor/socket" // a cloud POS: all its vendor's locations, a vendor JWT
)

// Defaults for the zero values of POSSocket's fields.
const (
	DefaultHeartbeatInterval = 30 * time.Second
	DefaultMissedPongs       = 2
	DefaultSocketMinBackoff  = 500 * time.Millisecond
	DefaultSocketMaxBackoff  = 30 * time.Second
	DefaultSocketWrite       = 10 * time.Second
	DefaultSocketMaxMessage  = 1 << 20
	DefaultEventDedup        = 4096
)

// Event is a platform event pushed to the POS, e.g. a new order for a location.
type Event struct {
	ID         string          // the event's id; the same event may arrive again after a reconnection
	Type       string          // e.g. "order_created"
	LocationID string          // the location it is for (a cloud POS hears from all its vendor's)
	Data       json.RawMessage // the event's data as sent (nil when absent)
}

// EventHandler receives events, one at a time, in the order they arrived. An event whose ID was
// handled recently is not handed over again. ctx is cancelled when Run stops.
type EventHandler interface {
	HandleEvent(ctx context.Context, e *Event)
}

// EventHandlerFunc adapts a function to EventHandler.
type EventHandlerFunc func(ctx context.Context, e *Event)

// HandleEvent calls f.
func (f EventHandlerFunc) HandleEvent(ctx context.Context, e *Event) { f(ctx, e) }

// POSSocket is a Doshii POS's websocket to posgate: the link over which the platform pushes
// events to the POS and sees that the venue is online. Set either LocationToken (an on-premises
// POS, one location) or Vendor and VendorKey (a cloud POS, every location of its vendor on one
// socket), then call Run.
//
// The socket sends a heartbeat {"doshii":{"ping":<unix ms>,"version":…}} on opening and every
// HeartbeatInterval, and another whenever posgate sends a health_check; posgate answers each with
// a pong carrying the same value. When MissedPongs heartbeat intervals in a row pass without a
// pong, the socket is taken as dead and reopened. Ping values are echoed, never compared with
// the local clock, so a wrong clock does not break the heartbeat.
//
// A cloud POS signs a fresh vendor JWT {vendor, timestamp} (HS256 with the vendor key) for every
// connection. If posgate refuses it and its Date header shows the local clock more than
// tokensource.SkewThreshold off, the JWT is signed again with the server's time before giving up.
//
// How a connection ends decides what comes next. Run returns: when ctx is cancelled; when the
// upgrade is refused with 401 (ErrSocketRefused: a wrong or rotated location token, a wrong vendor
// key — for a cloud POS after the one re-signing above) or 403 (ErrSocketDisabled); on 4001 for a
// location token (ErrSocketRevoked: rotated while connected); on 4003 (ErrSocketDisabled) and
// 4009 (ErrSocketReplaced); when posgate's TLS certificate is not trusted (ErrSocketCertificate). Anything else — 1000, 1001 (posgate shutting down), 1011, 4001 on a
// cloud socket (a fresh JWT is signed), a dropped link, missed pongs, 429/503 (no sooner than
// Retry-After) — leads to a new connection after a capped, jittered exponential backoff.
//
// The location token and the JWT travel in the URL's query: they are never logged, never put in
// an error, and never sent after a redirect.
type POSSocket struct {
	// URL is posgate's base URL, e.g. "https://posgate.example.com". Plain http is refused for a
	// host other than loopback unless AllowPlainHTTP is set.
	URL            string
	AllowPlainHTTP bool

	LocationToken string     // an on-premises POS
	Vendor        string     // a cloud POS: the vendor's API name…
	VendorKey     *VendorKey // … and its key (VendorKey.Set rotates it; the next connection uses the new one)

	Version string // the POS's version, sent in heartbeats (at most 64 bytes); default "posgate-go-client"
	Handler EventHandler

	// HTTPClient makes the upgrade (its Transport's TLS settings apply); nil means
	// http.DefaultClient. Its Timeout, if any, bounds the upgrade only.
	HTTPClient *http.Client

	MinBackoff, MaxBackoff time.Duration
	HeartbeatInterval      time.Duration
	MissedPongs            int
	WriteTimeout           time.Duration
	MaxMessage             int64 // largest frame accepted from the server
	EventDedup             int   // event ids remembered

	Logger *slog.Logger     // connection events, never a credential nor event data; nil discards
	Now    func() time.Time // for heartbeat values and JWT timestamps; nil means time.Now

	sleep func(context.Context, time.Duration) error

	mu     sync.Mutex
	seen   *socket.Recent[struct{}]
	skew   tokensource.Skew // the server's clock against ours, learned from a refused JWT
	lastMS int64
}

// Sentinel errors Run's result matches with errors.Is.
var (
	ErrSocketRefused  = errors.New("doshii: posgate refused the socket's credential")
	ErrSocketRevoked  = errors.New("doshii: the location token was revoked or rotated")
	ErrSocketDisabled = errors.New("doshii: the location or vendor is disabled")
	ErrSocketReplaced = errors.New("doshii: replaced by a newer connection")
	// ErrSocketCertificate: posgate's TLS certificate could not be verified (configure the
	// HTTPClient's RootCAs); retrying would not help.
	ErrSocketCertificate = socket.ErrUntrustedCertificate
)

// SocketRefusedError is an upgrade posgate refused.
type SocketRefusedError struct {
	StatusCode int
	Message    string // the server's {"message"}, made printable
	RetryAfter time.Duration
	permanent  bool
}

func (e *SocketRefusedError) Error() string {
	s := fmt.Sprintf("doshii: socket refused: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap returns ErrSocketDisabled for 403 and ErrSocketRefused for 401: retrying with the same
// credential cannot help.
func (e *SocketRefusedError) Unwrap() error {
	switch {
	case !e.permanent:
		return nil
	case e.StatusCode == http.StatusForbidden:
		return ErrSocketDisabled
	}
	return ErrSocketRefused
}

// SocketCloseError is a socket posgate closed with a status code.
type SocketCloseError struct {
	Code   int
	Reason string
	cloud  bool
}

func (e *SocketCloseError) Error() string {
	return fmt.Sprintf("doshii: socket closed by posgate: %d %s", e.Code, e.Reason)
}

// Unwrap maps the codes that stop Run to their sentinels.
func (e *SocketCloseError) Unwrap() error {
	switch {
	case e.Code == 4001 && !e.cloud:
		return ErrSocketRevoked
	case e.Code == 4003:
		return ErrSocketDisabled
	case e.Code == 4009:
		return ErrSocketReplaced
	}
	return nil
}

func (s *POSSocket) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *POSSocket) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *POSSocket) cloud() bool { return s.LocationToken == "" }

// Run keeps the socket open and hands events to the Handler until ctx is cancelled (it then
// returns ctx.Err()) or until retrying cannot help (see POSSocket). It must not be called again
// while it runs.
func (s *POSSocket) Run(ctx context.Context) error {
	base, err := socket.CheckBaseURL(s.URL, s.AllowPlainHTTP)
	if err != nil {
		return fmt.Errorf("doshii: %w", err)
	}
	switch {
	case s.Handler == nil:
		return errors.New("doshii: POSSocket.Handler is nil")
	case len(s.Version) > MaxVersion || !utf8.ValidString(s.Version):
		// posgate closes a socket whose heartbeat carries a longer version, on every attempt.
		return fmt.Errorf("doshii: POSSocket.Version must be valid UTF-8 of at most %d bytes", MaxVersion)
	case s.LocationToken != "" && (s.Vendor != "" || s.VendorKey != nil):
		return errors.New("doshii: set either LocationToken or Vendor and VendorKey, not both")
	case s.LocationToken == "" && (s.Vendor == "" || s.VendorKey == nil):
		return errors.New("doshii: set LocationToken (on-premises POS) or Vendor and VendorKey (cloud POS)")
	}
	sleep := s.sleep
	if sleep == nil {
		sleep = socket.Sleep
	}
	s.mu.Lock()
	if s.seen == nil {
		s.seen = socket.NewRecent[struct{}](socket.OrDefault(s.EventDedup, DefaultEventDedup), 0)
	}
	s.mu.Unlock()

	events := make(chan *Event, 256)
	runCtx, stopWorker := context.WithCancel(ctx)
	var worker sync.WaitGroup
	worker.Add(1)
	go func() {
		defer worker.Done()
		for {
			select {
			case <-runCtx.Done():
				return
			case e := <-events:
				s.Handler.HandleEvent(runCtx, e)
			}
		}
	}()
	defer func() {
		stopWorker()
		worker.Wait()
	}()

	retry := socket.Retry{Backoff: socket.Backoff{Min: socket.OrDefault(s.MinBackoff, DefaultSocketMinBackoff), Max: socket.OrDefault(s.MaxBackoff, DefaultSocketMaxBackoff)}}
	resigned := false
	log := s.log()
	for {
		up, err := s.connectOnce(ctx, base, events)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var re *SocketRefusedError
		if errors.As(err, &re) && re.StatusCode == http.StatusUnauthorized && s.cloud() && !resigned && errors.Is(err, errSkew) {
			// The JWT was refused and posgate's clock is far from ours: sign with its time, once.
			resigned = true
			log.Warn("doshii: the local clock is off from posgate's; signing with the server's time", "offset", s.skew.Offset().Round(time.Second))
			continue
		}
		if up > 0 {
			resigned = false
		}
		if errors.Is(err, ErrSocketRefused) || errors.Is(err, ErrSocketRevoked) || errors.Is(err, ErrSocketDisabled) ||
			errors.Is(err, ErrSocketReplaced) || errors.Is(err, ErrSocketCertificate) {
			log.Error("doshii: stopping", "err", err)
			return err
		}
		var retryAfter time.Duration
		if re != nil {
			retryAfter = re.RetryAfter
		}
		wait := retry.Next(up, retryAfter)
		log.Warn("doshii: disconnected; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// errSkew marks a refused cloud-POS JWT when the server's clock is far from ours.
var errSkew = errors.New("clock skew")

type skewError struct {
	*SocketRefusedError
}

func (e skewError) Unwrap() []error { return []error{e.SocketRefusedError, errSkew} }

// credential returns the upgrade URL and the secret it carries.
func (s *POSSocket) credential(base *url.URL) (string, string, error) {
	if !s.cloud() {
		return socket.Endpoint(base, POSSocketPath, url.Values{"token": {s.LocationToken}}, true), s.LocationToken, nil
	}
	jwt, err := s.VendorKey.SignVendor(s.Vendor, s.skew.Now(s.now()))
	if err != nil {
		return "", "", err
	}
	return socket.Endpoint(base, VendorSocketPath, url.Values{"token": {jwt}, "vendor": {s.Vendor}}, true), jwt, nil
}

// connectOnce opens one socket and serves it until it ends; it returns how long it was up and
// why it ended.
func (s *POSSocket) connectOnce(ctx context.Context, base *url.URL, events chan<- *Event) (time.Duration, error) {
	u, secret, err := s.credential(base)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrSocketRefused, err) // no key: nothing to retry with
	}
	conn, ref, err := socket.Dial(ctx, u, secret, s.HTTPClient, socket.OrDefault(s.MaxMessage, DefaultSocketMaxMessage), s.now)
	if err != nil {
		if ref == nil {
			return 0, fmt.Errorf("doshii: connecting: %w", err)
		}
		var m struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(ref.Body, &m)
		re := &SocketRefusedError{StatusCode: ref.StatusCode, Message: socket.Printable(m.Message, 200), RetryAfter: ref.RetryAfter}
		if ref.StatusCode == http.StatusUnauthorized || ref.StatusCode == http.StatusForbidden {
			re.permanent = true
			if s.cloud() && s.skew.Learn(ref.Response, ref.At) {
				return 0, skewError{re}
			}
		}
		return 0, re
	}
	start := time.Now()
	s.log().Info("doshii: socket open", "cloud", s.cloud())

	hb := &heartbeat{s: s, conn: conn, kick: make(chan struct{}, 1)}
	connCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.Close(websocket.StatusGoingAway, "POS stopping") })
	defer stop()
	go hb.loop(connCtx)

	err = s.read(connCtx, ctx.Done(), conn, hb, events)
	conn.CloseNow()
	return time.Since(start), err
}

// heartbeat sends pings and counts the pongs that match one.
type heartbeat struct {
	s    *POSSocket
	conn *websocket.Conn
	kick chan struct{} // a health_check asks for a heartbeat now

	mu    sync.Mutex
	sent  [8]int64 // the last ping values sent
	next  int
	pongs atomic.Int64
}

func (h *heartbeat) loop(ctx context.Context) {
	t := time.NewTicker(socket.OrDefault(h.s.HeartbeatInterval, DefaultHeartbeatInterval))
	defer t.Stop()
	missed, seen := 0, int64(0)
	if !h.send(ctx) {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.kick:
		case <-t.C:
			if p := h.pongs.Load(); p == seen {
				missed++
			} else {
				missed, seen = 0, p
			}
			if missed >= socket.OrDefault(h.s.MissedPongs, DefaultMissedPongs) {
				h.s.log().Warn("doshii: heartbeats not answered; dropping the socket", "missed", missed)
				h.conn.CloseNow()
				return
			}
		}
		if !h.send(ctx) {
			return
		}
	}
}

// send writes one heartbeat; false when the socket is unusable.
func (h *heartbeat) send(ctx context.Context) bool {
	v := h.s.pingValue()
	h.mu.Lock()
	h.sent[h.next%len(h.sent)] = v
	h.next++
	h.mu.Unlock()
	frame, _ := json.Marshal(map[string]any{"doshii": map[string]any{"ping": v, "version": h.s.version()}})
	wctx, cancel := context.WithTimeout(ctx, socket.OrDefault(h.s.WriteTimeout, DefaultSocketWrite))
	defer cancel()
	if err := h.conn.Write(wctx, websocket.MessageText, frame); err != nil {
		if ctx.Err() == nil {
			h.s.log().Warn("doshii: could not send a heartbeat", "err", err)
			h.conn.CloseNow()
		}
		return false
	}
	return true
}

// pong counts a pong if it answers a ping this socket sent.
func (h *heartbeat) pong(v json.Number) bool {
	n, err := v.Int64()
	if err != nil {
		f, ferr := v.Float64()
		if ferr != nil || f != float64(int64(f)) {
			return false
		}
		n = int64(f)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, x := range h.sent {
		if x == n && n != 0 {
			h.pongs.Add(1)
			return true
		}
	}
	return false
}

// pingValue is the current time in unix milliseconds, strictly increasing within this socket.
func (s *POSSocket) pingValue() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.now().UnixMilli()
	if v <= s.lastMS {
		v = s.lastMS + 1
	}
	s.lastMS = v
	return v
}

func (s *POSSocket) version() string {
	if s.Version == "" {
		return "posgate-go-client"
	}
	return s.Version
}

// read reads frames until the socket ends and returns why it ended; stop is Run's end, which
// unblocks a reader waiting for room in the event queue.
func (s *POSSocket) read(ctx context.Context, stop <-chan struct{}, conn *websocket.Conn, hb *heartbeat, events chan<- *Event) error {
	log := s.log()
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			if code := websocket.CloseStatus(err); code != -1 {
				var ce websocket.CloseError
				errors.As(err, &ce)
				return &SocketCloseError{Code: int(code), Reason: socket.Printable(ce.Reason, 123), cloud: s.cloud()}
			}
			return fmt.Errorf("doshii: connection lost: %w", err)
		}
		if typ != websocket.MessageText {
			log.Warn("doshii: ignored a binary frame", "bytes", len(data))
			continue
		}
		f, err := decodeFrame(data)
		if err != nil {
			log.Warn("doshii: ignored a malformed frame", "err", err, "bytes", len(data))
			continue
		}
		switch {
		case f.pong != nil:
			if !hb.pong(*f.pong) {
				log.Warn("doshii: ignored a pong for a ping this socket did not send")
			}
		case f.healthCheck:
			select {
			case hb.kick <- struct{}{}:
			default:
			}
		default:
			if f.event.ID != "" {
				s.mu.Lock()
				_, dup := s.seen.Get(f.event.ID)
				if !dup {
					s.seen.Put(f.event.ID, struct{}{}, 0)
				}
				s.mu.Unlock()
				if dup {
					log.Info("doshii: dropped a re-delivered event", "id", f.event.ID, "type", f.event.Type)
					continue
				}
			}
			select {
			case events <- f.event:
			case <-stop:
				return errors.New("doshii: stopping")
			}
		}
	}
}

// MaxVersion is the longest Version posgate accepts in a heartbeat.
const MaxVersion = 64

// Limits on what the server sends.
const (
	maxEventType = 128
	maxEventID   = 256
)

// frame is one decoded server frame: a pong, a health check, or an event.
type frame struct {
	pong        *json.Number
	healthCheck bool
	event       *Event
}

// decodeFrame parses a frame from posgate: a JSON object with a non-empty string "type", an
// optional "data" (any JSON), and optional strings "id" and "locationId". A "message" whose data is
// {"doshii":{"pong":<number>}} is a heartbeat answer, a "health_check" asks for a heartbeat;
// anything else is an event.
func decodeFrame(data []byte) (frame, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw struct {
		Type       *string         `json:"type"`
		Data       json.RawMessage `json:"data"`
		ID         *string         `json:"id"`
		LocationID *string         `json:"locationId"`
	}
	if err := dec.Decode(&raw); err != nil {
		return frame{}, fmt.Errorf("not a frame object: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return frame{}, errors.New("data after the frame object")
	}
	switch {
	case raw.Type == nil || *raw.Type == "":
		return frame{}, errors.New("no type")
	case len(*raw.Type) > maxEventType:
		return frame{}, errors.New("type longer than " + strconv.Itoa(maxEventType) + " bytes")
	case raw.ID != nil && len(*raw.ID) > maxEventID:
		return frame{}, errors.New("id longer than " + strconv.Itoa(maxEventID) + " bytes")
	case raw.LocationID != nil && len(*raw.LocationID) > maxEventID:
		return frame{}, errors.New("locationId longer than " + strconv.Itoa(maxEventID) + " bytes")
	}
	data = bytes.TrimSpace(raw.Data)
	if bytes.Equal(data, []byte("null")) {
		data = nil
	}
	switch *raw.Type {
	case "health_check":
		return frame{healthCheck: true}, nil
	case "message":
		var m struct {
			Doshii *struct {
				Pong *json.Number `json:"pong"`
			} `json:"doshii"`
		}
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		if len(data) > 0 && data[0] == '{' && d.Decode(&m) == nil && m.Doshii != nil && m.Doshii.Pong != nil {
			return frame{pong: m.Doshii.Pong}, nil
		}
	}
	e := &Event{Type: *raw.Type, Data: data}
	if raw.ID != nil {
		e.ID = *raw.ID
	}
	if raw.LocationID != nil {
		e.LocationID = *raw.LocationID
	}
	return frame{event: e}, nil
}
