package doshii_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/sqlstore"
	"github.com/posgate/posgate/internal/testutil/wait"
)

// sock is a raw websocket client of a doshii socket.
type sock struct {
	t *testing.T
	c *websocket.Conn
}

func wsURL(inst *servertest.Instance, pathQuery string) string {
	return "ws" + strings.TrimPrefix(inst.URL, "http") + pathQuery
}

// dial opens a socket or returns the refusal's status and body.
func dial(t *testing.T, inst *servertest.Instance, pathQuery string) (*sock, int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, wsURL(inst, pathQuery), nil)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial %s: %v", strings.Split(pathQuery, "?")[0], err)
		}
		body, _ := io.ReadAll(resp.Body)
		return nil, resp.StatusCode, string(body)
	}
	c.SetReadLimit(1 << 20)
	s := &sock{t: t, c: c}
	t.Cleanup(func() { c.CloseNow() })
	return s, http.StatusSwitchingProtocols, ""
}

func mustDial(t *testing.T, inst *servertest.Instance, pathQuery string) *sock {
	t.Helper()
	s, st, body := dial(t, inst, pathQuery)
	if s == nil {
		t.Fatalf("dial %s: %d %s", strings.Split(pathQuery, "?")[0], st, body)
	}
	return s
}

func (s *sock) send(text string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.c.Write(ctx, websocket.MessageText, []byte(text)); err != nil {
		s.t.Fatalf("write: %v", err)
	}
}

// frame is what the server sends.
type frame struct {
	Type       string          `json:"type"`
	Data       json.RawMessage `json:"data"`
	ID         string          `json:"id"`
	LocationID string          `json:"locationId"`
	raw        string
}

// next returns the next frame that is not a health_check (unless health checks are wanted).
func (s *sock) next(wantHealth bool) (frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		_, data, err := s.c.Read(ctx)
		if err != nil {
			return frame{}, err
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			s.t.Fatalf("server sent a frame that is not JSON: %q", data)
		}
		f.raw = string(data)
		if f.Type == "health_check" && !wantHealth {
			continue
		}
		return f, nil
	}
}

func (s *sock) mustNext() frame {
	s.t.Helper()
	f, err := s.next(false)
	if err != nil {
		s.t.Fatalf("read: %v", err)
	}
	return f
}

// heartbeat sends a heartbeat and checks the pong.
func (s *sock) heartbeat(ping string) {
	s.t.Helper()
	s.send(`{"doshii":{"ping":` + ping + `,"version":"test-pos 1.0"}}`)
	f := s.mustNext()
	if want := `{"type":"message","data":{"doshii":{"pong":` + ping + `,"version":"v3"}}}`; f.raw != want {
		s.t.Fatalf("pong %s, want %s", f.raw, want)
	}
}

// closedWith waits for the server to close the socket and checks the code.
func (s *sock) closedWith(code websocket.StatusCode) {
	s.t.Helper()
	for {
		_, err := s.next(true)
		if err != nil {
			if got := websocket.CloseStatus(err); got != code {
				s.t.Fatalf("closed with %d (%v), want %d", got, err, code)
			}
			return
		}
	}
}

func vendorJWT(alg, vendorName, key string, now time.Time) string {
	b64 := base64.RawURLEncoding.EncodeToString
	in := b64([]byte(`{"alg":"`+alg+`","typ":"JWT"}`)) + "." +
		b64([]byte(fmt.Sprintf(`{"vendor":%q,"timestamp":%d}`, vendorName, now.Unix())))
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(in))
	return in + "." + b64(mac.Sum(nil))
}

func posQuery(v venue) string { return "/pos/socket?token=" + url.QueryEscape(v.token) }

func vendorQuery(v venue, now time.Time) string {
	return "/vendor/socket?vendor=" + url.QueryEscape(v.vendorName) + "&token=" + vendorJWT("HS256", v.vendorName, v.vendorKey, now)
}

// publisher holds a posgate access token with doshii:publish.
func publisher(t *testing.T, inst *servertest.Instance, scopes ...string) string {
	t.Helper()
	tok, _ := inst.ClientToken(t, "platform-"+strings.Join(scopes, "-"), "doshii", scopes...)
	return tok
}

// publish posts an event and returns the status and answer.
func publish(t *testing.T, inst *servertest.Instance, tok, location, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", inst.URL+"/v1/doshii/locations/"+location+"/events", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return res.StatusCode, out
}

func eventState(t *testing.T, inst *servertest.Instance, tok, location, id string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", inst.URL+"/v1/doshii/locations/"+location+"/events/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return res.StatusCode, out
}

// disconnectedDate reads the location's REST representation with a location JWT.
func (e *e2e) disconnectedDate(v venue, now time.Time) any {
	e.t.Helper()
	st, raw, out := e.call("GET", "/pos/v3/locations/"+v.id, nil, "vendor", v.vendorName, "Authorization", "Bearer "+v.jwtAt(now))
	if st != http.StatusOK {
		e.t.Fatalf("get location: %d %s", st, raw)
	}
	d, present := out["disconnectedDate"]
	if !present {
		e.t.Fatalf("no disconnectedDate member: %s", raw)
	}
	return d
}

func TestSocketsSQLite(t *testing.T)   { testSockets(t, "sqlite") }
func TestSocketsPostgres(t *testing.T) { testSockets(t, "postgres") }

// testSockets runs the socket contract against one instance: handshakes, heartbeats and online
// state, events to exactly the right sockets, bad input, disable and rotation.
func testSockets(t *testing.T, driver string) {
	clk := clock.NewFake(time.Now())
	inst := servertest.Start(t, servertest.Options{Driver: driver, Clock: clk, Configure: func(c *config.Config) {
		c.Doshii.OfflineAfter = 3 // the health-check loop runs every second (real time)
	}})
	e := &e2e{t: t, inst: inst}
	a1 := e.onboard("vendor-a", "Org A", "Venue A1")
	a2 := e.addLocation(a1, "Venue A2")
	a3 := e.addLocation(a1, "Venue A3")
	b1 := e.onboard("vendor-b", "Org B", "Venue B1")
	tok := publisher(t, inst, "doshii:publish")

	// Refused upgrades: 401 {"message"} before any 101.
	for _, c := range []struct{ name, pq string }{
		{"no token", "/pos/socket"},
		{"unknown location token", "/pos/socket?token=pg_lt_unknown"},
		{"token twice", posQuery(a1) + "&token=" + url.QueryEscape(a1.token)},
		{"vendor JWT with HS512", "/vendor/socket?vendor=vendor-a&token=" + vendorJWT("HS512", "vendor-a", a1.vendorKey, clk.Now())},
		{"vendor JWT with none", "/vendor/socket?vendor=vendor-a&token=" + vendorJWT("none", "vendor-a", a1.vendorKey, clk.Now())},
		{"vendor query not the JWT's vendor", "/vendor/socket?vendor=vendor-b&token=" + vendorJWT("HS256", "vendor-a", a1.vendorKey, clk.Now())},
		{"JWT of vendor A with vendor B's name signed by A", "/vendor/socket?vendor=vendor-a&token=" + vendorJWT("HS256", "vendor-b", a1.vendorKey, clk.Now())},
		{"a location token on the cloud socket", "/vendor/socket?vendor=vendor-a&token=" + url.QueryEscape(a1.token)},
		{"another vendor's location JWT on the cloud socket", "/vendor/socket?vendor=vendor-a&token=" + b1.jwtAt(clk.Now())},
		{"stale vendor JWT", "/vendor/socket?vendor=vendor-a&token=" + vendorJWT("HS256", "vendor-a", a1.vendorKey, clk.Now().Add(-time.Hour))},
		{"no vendor", "/vendor/socket?token=" + vendorJWT("HS256", "vendor-a", a1.vendorKey, clk.Now())},
	} {
		s, st, body := dial(t, inst, c.pq)
		if s != nil || st != http.StatusUnauthorized {
			t.Fatalf("%s: status %d, want 401", c.name, st)
		}
		var m map[string]any
		if json.Unmarshal([]byte(body), &m) != nil || len(m) != 1 || m["message"] == "" {
			t.Errorf("%s: body %q, want {\"message\"}", c.name, body)
		}
	}

	// Heartbeat, pong and online state.
	pos1 := mustDial(t, inst, posQuery(a1))
	if d := e.disconnectedDate(a1, clk.Now()); d == nil {
		t.Fatal("a location that never sent a heartbeat is online")
	}
	pos1.heartbeat("1700000000123")
	pos1.heartbeat("1.7e12")
	if d := e.disconnectedDate(a1, clk.Now()); d != nil {
		t.Fatalf("after a heartbeat disconnectedDate is %v, want null", d)
	}
	clk.Advance(4 * time.Second) // past offline_after
	if d := e.disconnectedDate(a1, clk.Now()); d == nil {
		t.Fatal("no heartbeat for offline_after, still online")
	}
	if st, body := inst.Admin(t, "GET", "/doshii/locations/"+a1.id, nil); st != http.StatusOK || body["online"] != false || body["disconnected_date"] == nil {
		t.Fatalf("admin view of an offline location: %d %v", st, body)
	}
	// The silent socket is asked for a heartbeat.
	if f, err := pos1.next(true); err != nil || f.Type != "health_check" || !strings.HasPrefix(f.raw, `{"type":"health_check","data":{"ping":`) {
		t.Fatalf("expected a health_check, got %+v %v", f, err)
	}
	pos1.heartbeat("42")
	if d := e.disconnectedDate(a1, clk.Now()); d != nil {
		t.Fatalf("online again after a heartbeat: disconnectedDate %v", d)
	}
	if st, body := inst.Admin(t, "GET", "/doshii/locations?vendor="+vendorID(t, inst, "vendor-a"), nil); st != http.StatusOK ||
		len(body["locations"].([]any)) != 3 {
		t.Fatalf("admin list: %d %v", st, body)
	} else {
		for _, l := range body["locations"].([]any) {
			l := l.(map[string]any)
			if online := l["id"] == a1.id; l["online"] != online || (l["disconnected_date"] == nil) != online {
				t.Fatalf("admin list: %v", l)
			}
		}
	}

	// Events reach the location's POS socket and its vendor's cloud socket, nobody else's.
	cloudA := mustDial(t, inst, vendorQuery(a1, clk.Now()))
	cloudB := mustDial(t, inst, vendorQuery(b1, clk.Now()))
	posB := mustDial(t, inst, posQuery(b1))
	pos3 := mustDial(t, inst, posQuery(a3))
	st, out := publish(t, inst, tok, a1.id, `{"type":"order_created","data":{"orderId":"o-1","items":[1, 2]},"id":"ev-1"}`)
	if st != http.StatusAccepted || out["id"] != "ev-1" || out["state"] == nil {
		t.Fatalf("publish: %d %v", st, out)
	}
	want := `{"type":"order_created","data":{"orderId":"o-1","items":[1,2]},"id":"ev-1","locationId":"` + a1.id + `"}`
	for name, s := range map[string]*sock{"POS socket": pos1, "cloud socket": cloudA} {
		if f := s.mustNext(); f.raw != want {
			t.Fatalf("%s received %s, want %s", name, f.raw, want)
		}
	}
	// The same id again is accepted and not delivered again; another body under it is a conflict.
	if st, out := publish(t, inst, tok, a1.id, `{"type":"order_created","data":{"orderId":"o-1","items":[1,2]},"id":"ev-1"}`); st != http.StatusAccepted || out["id"] != "ev-1" {
		t.Fatalf("publish again: %d %v", st, out)
	}
	if st, out := publish(t, inst, tok, a1.id, `{"type":"order_created","data":{"orderId":"other"},"id":"ev-1"}`); st != http.StatusConflict || out["error"] != "conflict" {
		t.Fatalf("same id, other body: %d %v", st, out)
	}
	for i := 2; i <= 4; i++ {
		if st, out := publish(t, inst, tok, a1.id, fmt.Sprintf(`{"type":"order_updated","data":{"n":%d},"id":"ev-%d"}`, i, i)); st != http.StatusAccepted {
			t.Fatalf("publish ev-%d: %d %v", i, st, out)
		}
	}
	for name, s := range map[string]*sock{"POS socket": pos1, "cloud socket": cloudA} {
		for i := 2; i <= 4; i++ { // in order, and ev-1 not again
			if f := s.mustNext(); f.ID != fmt.Sprintf("ev-%d", i) || f.LocationID != a1.id {
				t.Fatalf("%s: frame %d is %s", name, i, f.raw)
			}
		}
	}
	st, out = eventState(t, inst, tok, a1.id, "ev-1")
	if st != http.StatusOK || out["id"] != "ev-1" || out["type"] != "order_created" || out["state"] != "delivered" {
		t.Fatalf("event state: %d %v", st, out)
	}
	if st, out := eventState(t, inst, tok, a2.id, "ev-1"); st != http.StatusNotFound {
		t.Fatalf("event of another location: %d %v", st, out)
	}
	// Vendor B's sockets and location A3's socket received none of vendor A's location A1 events:
	// their first frame is their own.
	if st, _ := publish(t, inst, tok, b1.id, `{"type":"ping_b","data":{},"id":"b-1"}`); st != http.StatusAccepted {
		t.Fatal("publish to B1")
	}
	if st, _ := publish(t, inst, tok, a3.id, `{"type":"ping_a3","data":{},"id":"a3-1"}`); st != http.StatusAccepted {
		t.Fatal("publish to A3")
	}
	for name, c := range map[string]struct {
		s  *sock
		id string
	}{"B1's POS socket": {posB, "b-1"}, "B's cloud socket": {cloudB, "b-1"}, "A3's POS socket": {pos3, "a3-1"}} {
		if f := c.s.mustNext(); f.ID != c.id {
			t.Fatalf("%s first received %s", name, f.raw)
		}
	}
	if f := cloudA.mustNext(); f.ID != "a3-1" || f.LocationID != a3.id {
		t.Fatalf("A's cloud socket: %s", f.raw)
	}

	// An event for a location without a socket waits and is delivered on connect.
	if st, out := publish(t, inst, tok, a2.id, `{"type":"order_created","data":{"x":true},"id":"late"}`); st != http.StatusAccepted || out["state"] != "queued" {
		t.Fatalf("publish while offline: %d %v", st, out)
	}
	if f := cloudA.mustNext(); f.ID != "late" {
		t.Fatalf("cloud socket: %s", f.raw)
	}

	// Bad input on A2's socket closes that socket only; A2's pending event comes first.
	for _, c := range []struct {
		name  string
		frame string
		code  websocket.StatusCode
	}{
		{"text that is not JSON", "hello", 1008},
		{"non-numeric ping", `{"doshii":{"ping":"123","version":"1"}}`, 1008},
		{"not a heartbeat", `{"type":"message","data":{}}`, 1008},
		{"not UTF-8", "{\"doshii\":{\"ping\":1,\"version\":\"\xff\"}}", 1007},
		{"oversized", `{"doshii":{"ping":1,"version":"` + strings.Repeat("v", 8<<10) + `"}}`, 1009},
		{"over the hub limit", strings.Repeat(" ", 2<<20), 1009},
	} {
		s := mustDial(t, inst, posQuery(a2))
		if c.name == "text that is not JSON" {
			if f := s.mustNext(); f.ID != "late" {
				t.Fatalf("A2's socket first received %s", f.raw)
			}
		}
		s.send(c.frame)
		s.closedWith(c.code)
	}
	s := mustDial(t, inst, posQuery(a2))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := s.c.Write(ctx, websocket.MessageBinary, []byte(`{"doshii":{"ping":1}}`)); err != nil {
		t.Fatal(err)
	}
	cancel()
	s.closedWith(1008)
	pos1.heartbeat("7") // the others carry on
	cloudA.heartbeat("8")
	posB.heartbeat("9")

	// Disabling a location closes its socket (4003) and refuses it; the cloud socket stays.
	if st, body := inst.Admin(t, "POST", "/doshii/locations/"+a3.id+"/disable", nil); st != http.StatusOK || body["disabled"] != true {
		t.Fatalf("disable: %d %v", st, body)
	}
	pos3.closedWith(4003)
	if _, st, body := dial(t, inst, posQuery(a3)); st != http.StatusForbidden || !strings.Contains(body, `"message"`) {
		t.Fatalf("socket of a disabled location: %d %s", st, body)
	}
	if st, raw, _ := e.call("GET", "/pos/v3/locations/"+a3.id, nil, "vendor", a3.vendorName, "Authorization", "Bearer "+a3.jwtAt(clk.Now())); st != http.StatusForbidden {
		t.Fatalf("venue call of a disabled location: %d %s", st, raw)
	}
	if st, out := publish(t, inst, tok, a3.id, `{"type":"x","data":{}}`); st != http.StatusConflict {
		t.Fatalf("publish to a disabled location: %d %v", st, out)
	}
	cloudA.heartbeat("10")

	// A rotated location token closes the sockets opened with the old one (4001).
	if st, body := inst.Admin(t, "POST", "/doshii/locations/"+a1.id+"/rotate-token", nil); st != http.StatusOK {
		t.Fatalf("rotate: %d %v", st, body)
	}
	pos1.closedWith(4001)
	if _, st, _ := dial(t, inst, posQuery(a1)); st != http.StatusUnauthorized {
		t.Fatalf("old token after rotation: %d", st)
	}

	// Disabling a vendor closes its cloud socket and its locations' sockets.
	if st, body := inst.Admin(t, "POST", "/doshii/vendors/"+vendorID(t, inst, "vendor-b")+"/disable", nil); st != http.StatusOK || body["disabled"] != true {
		t.Fatalf("disable vendor: %d %v", st, body)
	}
	cloudB.closedWith(4003)
	posB.closedWith(4003)
	if _, st, _ := dial(t, inst, vendorQuery(b1, clk.Now())); st != http.StatusForbidden {
		t.Fatalf("cloud socket of a disabled vendor: %d", st)
	}
	cloudA.heartbeat("11") // vendor A is untouched

	// Events API refusals: RFC 6750.
	other := publisher(t, inst, "orders")
	if st, out := publish(t, inst, other, a1.id, `{"type":"x","data":{}}`); st != http.StatusForbidden || out["error"] != "insufficient_scope" {
		t.Fatalf("without doshii:publish: %d %v", st, out)
	}
	if st, out := publish(t, inst, "not-a-token", a1.id, `{"type":"x","data":{}}`); st != http.StatusUnauthorized || out["error"] != "invalid_token" {
		t.Fatalf("bad token: %d %v", st, out)
	}
	for _, body := range []string{`{"type":"x"}`, `{"type":"x","data":[]}`, `{"type":"","data":{}}`, `{"type":"message","data":{}}`,
		`{"type":"x","data":{},"id":"a/b"}`, `{"type":"x","data":{},"extra":1}`, `{"type":"x","type":"y","data":{}}`, `not json`} {
		if st, out := publish(t, inst, tok, a1.id, body); st != http.StatusBadRequest || out["error"] != "invalid_request" {
			t.Errorf("body %s: %d %v", body, st, out)
		}
	}
	if st, out := publish(t, inst, tok, "dl_missing", `{"type":"x","data":{}}`); st != http.StatusNotFound {
		t.Fatalf("unknown location: %d %v", st, out)
	}

	logs := inst.Logs()
	for _, secret := range []string{a1.token, a2.token, b1.token, a1.vendorKey, "pg_lt_", "pg_vk_", "token="} {
		if strings.Contains(logs, secret) {
			t.Fatalf("a credential (%.10s…) reached the logs", secret)
		}
	}
}

// TestSocketReplicas: an event published on replica one reaches a socket held by replica two,
// and a location's online state is the same on both.
func TestSocketReplicas(t *testing.T) {
	clk := clock.NewFake(time.Now())
	one := servertest.Start(t, servertest.Options{Driver: "postgres", Clock: clk})
	two := servertest.Start(t, servertest.Options{ReplicaOf: one, Clock: clk})
	e1, e2 := &e2e{t: t, inst: one}, &e2e{t: t, inst: two}
	a := e1.onboard("vendor-a", "Org A", "Venue A")
	tok := publisher(t, one, "doshii:publish")

	pos := mustDial(t, two, posQuery(a))
	pos.heartbeat("1")
	// Both replicas show where the location's sockets are: its POS socket on replica two, its
	// vendor's cloud socket on replica one.
	cloud := mustDial(t, one, vendorQuery(a, clk.Now()))
	cloud.heartbeat("2")
	for _, inst := range []*servertest.Instance{one, two} {
		wait.Until(t, "both sockets in the admin view", func() bool {
			st, body := inst.Admin(t, "GET", "/doshii/locations/"+a.id, nil)
			socks, _ := body["sockets"].([]any)
			if st != http.StatusOK || len(socks) != 2 {
				return false
			}
			p, c := socks[0].(map[string]any), socks[1].(map[string]any)
			return p["kind"] == "pos" && p["replica"] == two.Svc.Hub.Replica() && p["connected_since"] != nil &&
				c["kind"] == "cloud" && c["replica"] == one.Svc.Hub.Replica()
		})
	}
	if d := e1.disconnectedDate(a, clk.Now()); d != nil {
		t.Fatalf("replica one: disconnectedDate %v after a heartbeat on replica two", d)
	}
	for i := 1; i <= 20; i++ {
		if st, out := publish(t, one, tok, a.id, fmt.Sprintf(`{"type":"order_created","data":{"n":%d},"id":"r-%d"}`, i, i)); st != http.StatusAccepted {
			t.Fatalf("publish %d: %d %v", i, st, out)
		}
	}
	for i := 1; i <= 20; i++ {
		if f := pos.mustNext(); f.ID != fmt.Sprintf("r-%d", i) {
			t.Fatalf("frame %d on replica two: %s", i, f.raw)
		}
	}
	clk.Advance(91 * time.Second)
	if d := e2.disconnectedDate(a, clk.Now()); d == nil {
		t.Fatal("replica two: still online after offline_after without a heartbeat")
	}
	// A disable on replica one closes the socket on replica two.
	if st, body := one.Admin(t, "POST", "/doshii/locations/"+a.id+"/disable", nil); st != http.StatusOK {
		t.Fatalf("disable: %d %v", st, body)
	}
	pos.closedWith(4003)
}

// TestSocketThrottle: failed socket handshakes count like failed venue calls; past the
// per-address limit the upgrade is refused with 429, Retry-After and {"message"}, before any 101.
func TestSocketThrottle(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{Configure: func(c *config.Config) { c.Throttle.PerAddress = 5 }})
	var last int
	var body string
	var hdr http.Header
	for i := 0; i < 8; i++ {
		req, _ := http.NewRequest("GET", inst.URL+"/pos/socket?token=pg_lt_guess"+fmt.Sprint(i), nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		res, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		last, body, hdr = res.StatusCode, string(raw), res.Header
	}
	if last != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || !strings.HasPrefix(body, `{"message":`) {
		t.Fatalf("after 8 failed handshakes: %d %v %s", last, hdr, body)
	}
}

// A publish whose second outbox message (the cloud socket's) fails to be stored stores neither:
// the retry, which has no id and so gets a new one, makes the only event the sockets receive.
func TestPublishFailingHalfWaySQLite(t *testing.T)   { testPublishFailingHalfWay(t, "sqlite") }
func TestPublishFailingHalfWayPostgres(t *testing.T) { testPublishFailingHalfWay(t, "postgres") }

func testPublishFailingHalfWay(t *testing.T, driver string) {
	inst := servertest.Start(t, servertest.Options{Driver: driver})
	e := &e2e{t: t, inst: inst}
	a := e.onboard("vendor-a", "Org A", "Venue A")
	tok := publisher(t, inst, "doshii:publish")
	db := inst.Svc.Store.(interface{ Writer() sqlstore.Querier }).Writer()
	ctx := context.Background()
	// A trigger refuses every insert into the cloud sockets' queues.
	fail := map[string][]string{
		"sqlite": {`CREATE TRIGGER fail_cloud BEFORE INSERT ON outbox WHEN NEW.queue LIKE 'doshii-vendor:%'
			BEGIN SELECT RAISE(ABORT, 'injected failure'); END`},
		"postgres": {`CREATE FUNCTION fail_cloud() RETURNS trigger AS $$ BEGIN
				IF NEW.queue LIKE 'doshii-vendor:%' THEN RAISE EXCEPTION 'injected failure'; END IF;
				RETURN NEW; END $$ LANGUAGE plpgsql`,
			`CREATE TRIGGER fail_cloud BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION fail_cloud()`},
	}[driver]
	for _, q := range fail {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if st, out := publish(t, inst, tok, a.id, `{"type":"order_created","data":{"n":1}}`); st < 500 {
		t.Fatalf("publish with a failing store: %d %v", st, out)
	}
	if _, err := db.Exec(ctx, `DROP TRIGGER fail_cloud`+map[string]string{"sqlite": "", "postgres": " ON outbox"}[driver]); err != nil {
		t.Fatal(err)
	}
	st, out := publish(t, inst, tok, a.id, `{"type":"order_created","data":{"n":1}}`)
	if st != http.StatusAccepted {
		t.Fatalf("retry: %d %v", st, out)
	}
	ob := inst.Svc.Store.(store.Outbox)
	if n, err := ob.CountOutbox(ctx, "doshii:"+a.id); err != nil || n != 1 {
		t.Fatalf("the location's queue holds %d events (%v), want the retry's only", n, err)
	}
	pos := mustDial(t, inst, posQuery(a))
	if f := pos.mustNext(); f.ID != out["id"] {
		t.Fatalf("POS socket first received %s, want the retry's %v", f.raw, out["id"])
	}
}

// A cloud socket lives as long as the vendor key that signed its JWT: a rotation leaves it open
// through the overlap, then it is closed with 4001 — also when the rotation happened on another
// replica. A JWT signed with the new key opens a socket that stays.
func TestCloudSocketKeyRotationSQLite(t *testing.T) {
	clk := clock.NewFake(time.Now())
	inst := servertest.Start(t, servertest.Options{Clock: clk, Configure: rotationConfig})
	testCloudSocketKeyRotation(t, clk, inst, inst)
}

func TestCloudSocketKeyRotationReplicas(t *testing.T) {
	clk := clock.NewFake(time.Now())
	one := servertest.Start(t, servertest.Options{Driver: "postgres", Clock: clk, Configure: rotationConfig})
	two := servertest.Start(t, servertest.Options{ReplicaOf: one, Clock: clk, Configure: rotationConfig})
	testCloudSocketKeyRotation(t, clk, one, two)
}

func rotationConfig(c *config.Config) {
	c.Doshii.OfflineAfter = 3 // the sockets' check runs every second (real time)
	c.Doshii.KeyOverlap = 60
}

// testCloudSocketKeyRotation rotates the key on one and watches the cloud socket on two.
func testCloudSocketKeyRotation(t *testing.T, clk *clock.Fake, one, two *servertest.Instance) {
	e := &e2e{t: t, inst: one}
	a := e.onboard("vendor-a", "Org A", "Venue A")
	cloud := mustDial(t, two, vendorQuery(a, clk.Now()))
	cloud.heartbeat("1")
	st, body := one.Admin(t, "POST", "/doshii/vendors/"+vendorID(t, one, "vendor-a")+"/rotate-key", nil)
	if st != http.StatusOK {
		t.Fatalf("rotate: %d %v", st, body)
	}
	newKey := body["vendor_key"].(string)
	// Within the overlap the socket carries on (the check runs every second meanwhile).
	clk.Advance(50 * time.Second)
	time.Sleep(1500 * time.Millisecond) // let the once-a-second check run; a bug would close the socket now
	cloud.heartbeat("2")
	clk.Advance(11 * time.Second) // past the overlap
	cloud.closedWith(4001)
	if _, st, _ := dial(t, two, vendorQuery(a, clk.Now())); st != http.StatusUnauthorized {
		t.Fatalf("a JWT of the old key after the overlap: %d", st)
	}
	a.vendorKey = newKey
	fresh := mustDial(t, two, vendorQuery(a, clk.Now()))
	time.Sleep(1500 * time.Millisecond) // a check runs; the new key is live
	fresh.heartbeat("3")
}

// Deleting a location closes its POS socket (4003) on the replica that holds it and refuses its
// token and JWTs there at once; its vendor's cloud socket stays. Deleting the vendor closes its
// cloud socket and its locations' sockets and refuses its keys. Another vendor is untouched.
func TestDeleteSQLite(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	testDelete(t, inst, inst)
}

func TestDeleteReplicas(t *testing.T) {
	one := servertest.Start(t, servertest.Options{Driver: "postgres"})
	two := servertest.Start(t, servertest.Options{ReplicaOf: one})
	testDelete(t, one, two)
}

// testDelete deletes on one and watches the sockets and credentials on two.
func testDelete(t *testing.T, one, two *servertest.Instance) {
	e1, e2 := &e2e{t: t, inst: one}, &e2e{t: t, inst: two}
	a1 := e1.onboard("vendor-a", "Org A", "Venue A1")
	a2 := e1.addLocation(a1, "Venue A2")
	b1 := e1.onboard("vendor-b", "Org B", "Venue B1")
	now := time.Now()
	// Warm replica two's credential caches: what a deletion must drop.
	pos1 := mustDial(t, two, posQuery(a1))
	pos1.heartbeat("1")
	cloudA := mustDial(t, two, vendorQuery(a1, now))
	cloudA.heartbeat("2")
	pos2 := mustDial(t, two, posQuery(a2))
	pos2.heartbeat("3")
	posB := mustDial(t, two, posQuery(b1))
	if st, raw, _ := e2.call("GET", "/pos/v3/locations/"+a1.id, nil, "vendor", a1.vendorName, "Authorization", "Bearer "+a1.jwtAt(time.Now())); st != http.StatusOK {
		t.Fatalf("venue call before the deletion: %d %s", st, raw)
	}

	if st, body := one.Admin(t, "DELETE", "/doshii/locations/"+a1.id, nil); st != http.StatusOK || body["deleted"] != true {
		t.Fatalf("delete location: %d %v", st, body)
	}
	pos1.closedWith(4003)
	if _, st, body := dial(t, two, posQuery(a1)); st != http.StatusUnauthorized || !strings.Contains(body, `"message"`) {
		t.Fatalf("socket with a deleted location's token: %d %s", st, body)
	}
	if st, raw, _ := e2.call("GET", "/pos/v3/locations/"+a1.id, nil, "vendor", a1.vendorName, "Authorization", "Bearer "+a1.jwtAt(time.Now())); st != http.StatusUnauthorized {
		t.Fatalf("venue call of a deleted location: %d %s", st, raw)
	}
	if st, _ := two.Admin(t, "GET", "/doshii/locations/"+a1.id, nil); st != http.StatusNotFound {
		t.Fatalf("admin get of a deleted location: %d", st)
	}
	if st, _ := one.Admin(t, "DELETE", "/doshii/locations/"+a1.id, nil); st != http.StatusNotFound {
		t.Fatalf("deleting it again: %d", st)
	}
	cloudA.heartbeat("4") // the cloud socket carries the vendor's other locations
	pos2.heartbeat("5")

	if st, body := one.Admin(t, "DELETE", "/doshii/vendors/"+vendorID(t, one, "vendor-a"), nil); st != http.StatusOK || body["deleted"] != true {
		t.Fatalf("delete vendor: %d %v", st, body)
	}
	cloudA.closedWith(4003)
	pos2.closedWith(4003)
	if _, st, _ := dial(t, two, vendorQuery(a1, time.Now())); st != http.StatusUnauthorized {
		t.Fatalf("cloud socket of a deleted vendor: %d", st)
	}
	if _, st, _ := dial(t, two, posQuery(a2)); st != http.StatusUnauthorized {
		t.Fatalf("socket of a deleted vendor's location: %d", st)
	}
	if st, raw, _ := e2.call("POST", "/pos/v3/locations", map[string]any{"name": "Again", "organisationId": a1.org},
		"vendor", a1.vendorName, "Authorization", "Bearer "+a1.vendorKey); st != http.StatusUnauthorized {
		t.Fatalf("onboarding with a deleted vendor's key: %d %s", st, raw)
	}
	posB.heartbeat("6") // vendor B carries on
	if st, body := one.Admin(t, "DELETE", "/doshii/vendors/dv_missing", nil); st != http.StatusNotFound || body["error"] != "not_found" {
		t.Fatalf("unknown vendor: %d %v", st, body)
	}
}
