package doshii

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/hub"
)

// The sockets a Doshii POS keeps open, on the shared hub:
//
//   - GET /pos/socket?token=<location token>: an on-premises POS, one location. Tenant and
//     outbox queue "doshii:<location id>".
//   - GET /vendor/socket?token=<vendor JWT>&vendor=<api name>: a cloud POS, every location of its
//     vendor. Tenant and outbox queue "doshii-vendor:<vendor id>".
//
// Each is exclusive: a newer socket of the same location (or vendor) replaces the older one
// (4009), on any replica. The upgrade is authenticated before any 101 through the Verifier (the
// same throttle and audit as REST calls); a refusal is the dialect's {"message"} with 401, 403,
// 429 or 503. The POS's heartbeat is answered with a pong and moves the location's offline
// deadline in the store, so every replica gives the same online state.

// Tenant and queue names.
func locationTenant(id string) string { return "doshii:" + id }
func vendorTenant(id string) string   { return "doshii-vendor:" + id }

// maxTokenQuery bounds the token query parameter before anything looks at it.
const maxTokenQuery = 8 << 10

// sockets holds the live doshii connections of this replica, for health checks.
type sockets struct {
	m            *Module
	hub          *hub.Hub
	offlineAfter time.Duration
	online       *onlineWriter

	mu    sync.Mutex
	conns map[*hub.Conn]*posConn

	stop context.CancelFunc
	done chan struct{}
}

// posConn is one doshii socket: the dialect's side of a hub connection.
type posConn struct {
	s        *sockets
	vendor   Vendor
	location string // "" on a cloud socket
	// keyID is the vendor key that signed a cloud socket's JWT: the socket is closed (4001) once
	// that key's rotation overlap ends.
	keyID    string
	lastBeat atomic.Int64
	// written is the heartbeat (unix ns) whose deadline was last written to the store; set by
	// the onlineWriter only.
	written atomic.Int64
	// queued is the last heartbeat (unix ns) queued for the store, waiting the pongs held back
	// for a write; both guarded by the onlineWriter's mutex.
	queued  int64
	waiting int
}

func newSockets(m *Module, h *hub.Hub, offlineAfter time.Duration) *sockets {
	return &sockets{m: m, hub: h, offlineAfter: offlineAfter, conns: map[*hub.Conn]*posConn{},
		online: newOnlineWriter(m.svc.Store, m.svc.Log, offlineAfter)}
}

// start runs the health-check loop and the heartbeats' store writer until ctx ends or shutdown.
func (s *sockets) start(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	s.stop, s.done = cancel, make(chan struct{})
	every := s.healthEvery()
	var loops sync.WaitGroup
	loops.Add(2)
	go func() { loops.Wait(); close(s.done) }()
	go func() { defer loops.Done(); s.online.run(ctx) }()
	go func() {
		defer loops.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.healthCheck(s.m.svc.Clock.Now())
				s.checkVendorKeys(ctx, "")
			}
		}
	}()
}

func (s *sockets) shutdown(ctx context.Context) error {
	if s.stop == nil {
		return nil
	}
	s.stop()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// healthEvery is how long a socket may stay silent before the server asks for a heartbeat: a
// third of the offline delay, so a POS that answers is never marked offline.
func (s *sockets) healthEvery() time.Duration {
	d := s.offlineAfter / 3
	if d < time.Second {
		d = time.Second
	}
	return d
}

// healthCheck sends {"type":"health_check"} to every socket without a heartbeat for healthEvery.
func (s *sockets) healthCheck(now time.Time) {
	s.mu.Lock()
	quiet := make([]*hub.Conn, 0, 16)
	limit := now.Add(-s.healthEvery()).UnixNano()
	for c, pc := range s.conns {
		if pc.lastBeat.Load() <= limit {
			quiet = append(quiet, c)
		}
	}
	s.mu.Unlock()
	if len(quiet) == 0 {
		return
	}
	frame := AppendHealthCheck(nil, now.UnixMilli())
	for _, c := range quiet {
		_ = c.Send(frame, nil) // a closed or too slow connection is the hub's business
	}
}

// checkVendorKeys closes, with 4001, the cloud sockets (of vendor apiName; "" for every vendor)
// whose JWT was signed by a key that no longer verifies: its rotation overlap ended. The JWT
// only opened the socket; without this a rotated-out key would keep it open for good.
func (s *sockets) checkVendorKeys(ctx context.Context, apiName string) {
	s.mu.Lock()
	cloud := make(map[*hub.Conn]*posConn)
	for c, pc := range s.conns {
		if pc.location == "" && (apiName == "" || pc.vendor.APIName == apiName) {
			cloud[c] = pc
		}
	}
	s.mu.Unlock()
	for c, pc := range cloud {
		live, err := s.m.verifier.VendorKeyLive(ctx, pc.vendor.APIName, pc.keyID)
		if err != nil {
			continue // unknown vendor (deleted: closed with 4003 by the deletion) or the store is down
		}
		if !live {
			c.Close(hub.CodeRevoked, "vendor key expired")
		}
	}
}

// Opened implements hub.Opener.
func (pc *posConn) Opened(c *hub.Conn) {
	pc.lastBeat.Store(c.Since().UnixNano())
	pc.s.mu.Lock()
	pc.s.conns[c] = pc
	pc.s.mu.Unlock()
}

// Closed implements hub.Closer.
func (pc *posConn) Closed(c *hub.Conn, _ hub.Code) {
	pc.s.mu.Lock()
	delete(pc.s.conns, c)
	pc.s.mu.Unlock()
}

// HandleMessage implements hub.Handler: a heartbeat is answered and recorded; anything else
// closes the socket with the code DecodeHeartbeat names.
func (pc *posConn) HandleMessage(ctx context.Context, c *hub.Conn, msg []byte) error {
	hb, err := DecodeHeartbeat(msg)
	if err != nil {
		fe := err.(*FrameError)
		return &hub.CloseError{Code: hub.Code(fe.Code), Reason: fe.Reason}
	}
	now := pc.s.m.svc.Clock.Now().UnixNano()
	pc.lastBeat.Store(now)
	pc.s.online.beat(pc, c, now, AppendPong(make([]byte, 0, 96), hb))
	return nil
}

// socketToken returns the single token query parameter (never logged: the access log drops the
// query string, and nothing here writes it anywhere).
func socketToken(r *http.Request, name string) (string, error) {
	if len(r.Header.Values("Authorization")) > 0 {
		// The query's token is the socket's one credential; a second one next to it is a
		// client that does not know which it sends.
		return "", errs.New(errs.BadInput, "invalid_request", "the socket's credential goes in the token query parameter only, not in an Authorization header")
	}
	vals := r.URL.Query()[name]
	if len(vals) != 1 || vals[0] == "" {
		return "", errs.New(errs.Unauthenticated, "no_credential", "the "+name+" query parameter is required once")
	}
	if len(vals[0]) > maxTokenQuery {
		return "", errs.New(errs.Unauthenticated, "invalid_credential", "the "+name+" query parameter is too long")
	}
	return vals[0], nil
}

// posSocket serves GET /pos/socket?token=<location token>.
func (s *sockets) posSocket(w http.ResponseWriter, r *http.Request) {
	tok, err := socketToken(r, "token")
	if err != nil {
		s.m.writeError(w, r, err)
		return
	}
	venue, err := s.m.verifier.AuthenticateLocationToken(r.Context(), auth.Addr(r), tok)
	if err != nil {
		s.m.writeError(w, r, err)
		return
	}
	pc := &posConn{s: s, vendor: venue.Vendor, location: venue.Location.ID}
	tenant := locationTenant(venue.Location.ID)
	s.accept(w, r, hub.Spec{Dialect: Dialect, Tenants: []string{tenant}, Exclusive: true, Handler: pc,
		Delivery: &hub.Delivery{Queues: []string{tenant}, Mode: hub.DoneWhenWritten}})
}

// vendorSocket serves GET /vendor/socket?token=<vendor JWT>&vendor=<api name>.
func (s *sockets) vendorSocket(w http.ResponseWriter, r *http.Request) {
	tok, err := socketToken(r, "token")
	if err != nil {
		s.m.writeError(w, r, err)
		return
	}
	name, err := socketToken(r, "vendor")
	if err != nil {
		s.m.writeError(w, r, err)
		return
	}
	vendor, _, err := s.m.verifier.AuthenticateVendorJWT(r.Context(), auth.Addr(r), name, tok)
	if err != nil {
		s.m.writeError(w, r, err)
		return
	}
	keyID, err := s.m.verifier.VendorJWTKey(r.Context(), name, tok)
	if err == nil && keyID == "" {
		err = errs.New(errs.Unauthenticated, "invalid_credential", "the vendor key was rotated") // in the moment since
	}
	if err != nil {
		s.m.writeError(w, r, err)
		return
	}
	pc := &posConn{s: s, vendor: *vendor, keyID: keyID}
	tenant := vendorTenant(vendor.ID)
	s.accept(w, r, hub.Spec{Dialect: Dialect, Tenants: []string{tenant}, Exclusive: true, Handler: pc,
		Delivery: &hub.Delivery{Queues: []string{tenant}, Mode: hub.DoneWhenWritten}})
}

func (s *sockets) accept(w http.ResponseWriter, r *http.Request, spec hub.Spec) {
	if err := s.hub.Accept(w, r, spec); err != nil && err != hub.ErrShuttingDown {
		s.m.svc.Log.LogAttrs(r.Context(), slog.LevelDebug, "doshii: socket not accepted", slog.String("error", err.Error()))
	}
}
