package orderpay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/testutil/wait"
)

// outlet is an outlet created through the admin API, with the secret it was created with.
type outlet struct {
	ID, ProviderOutletID, POSRemoteID, Secret string
}

func createOutlet(t testing.TB, inst *servertest.Instance, providerOutletID string) outlet {
	t.Helper()
	st, body := inst.Admin(t, "POST", "/orderpay/outlets", map[string]any{
		"provider_outlet_id": providerOutletID, "pos_remote_id": "pos-" + providerOutletID,
		"provider_id": 321, "provider_name": "Provider of " + providerOutletID,
	})
	if st != http.StatusCreated {
		t.Fatalf("create outlet: %d %v", st, body)
	}
	return outlet{ID: body["id"].(string), ProviderOutletID: providerOutletID, POSRemoteID: "pos-" + providerOutletID,
		Secret: body["auth_secret"].(string)}
}

// do sends a request and returns status, headers and body.
func do(t testing.TB, inst *servertest.Instance, method, path string, header map[string]string, body string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, inst.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := inst.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, data
}

func authBody(o outlet) string {
	b, _ := json.Marshal(map[string]string{"ProviderOutletID": o.ProviderOutletID, "POSRemoteID": o.POSRemoteID, "AuthSecret": o.Secret})
	return string(b)
}

// ticket authenticates o and returns its AccessToken.
func ticket(t testing.TB, inst *servertest.Instance, o outlet) string {
	t.Helper()
	st, _, body := do(t, inst, "POST", "/api/powerepos/v1/auth", map[string]string{"Content-Type": "application/json"}, authBody(o))
	var out struct{ AccessToken string }
	if st != http.StatusOK || json.Unmarshal(body, &out) != nil || out.AccessToken == "" {
		t.Fatalf("auth: %d %s", st, body)
	}
	return out.AccessToken
}

func wsURL(inst *servertest.Instance, path, tok string) string {
	return "ws" + strings.TrimPrefix(inst.URL, "http") + path + "?token=" + url.QueryEscape(tok)
}

// pos is a POS end of a websocket, driven by the test.
type pos struct {
	t  testing.TB
	ws *websocket.Conn
}

// dial opens the websocket of o with a fresh ticket.
func dial(t testing.TB, inst *servertest.Instance, o outlet) *pos {
	t.Helper()
	// The ticket first: its argon2id check must not eat into the handshake's time.
	u := wsURL(inst, "/ws", ticket(t, inst, o))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	ws.SetReadLimit(4 << 20)
	p := &pos{t: t, ws: ws}
	t.Cleanup(func() { _ = ws.CloseNow() })
	return p
}

// frame is a request as the POS receives it.
type frame struct {
	ProviderID     int64
	ProviderName   string
	DeviceID       string
	UserIdentifier string
	MessageType    int64
	Payload        json.RawMessage
	RequestID      string
}

// read returns the next request, failing after 10 s.
func (p *pos) read() (frame, []byte) {
	p.t.Helper()
	return p.readWithin(10 * time.Second)
}

// readWithin returns the next request, failing after d.
func (p *pos) readWithin(d time.Duration) (frame, []byte) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	typ, data, err := p.ws.Read(ctx)
	if err != nil {
		p.t.Fatalf("pos read: %v", err)
	}
	if typ != websocket.MessageText {
		p.t.Fatalf("pos read: message type %v", typ)
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		p.t.Fatalf("pos read: %v: %s", err, data)
	}
	return f, data
}

func (p *pos) write(typ websocket.MessageType, data []byte) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.ws.Write(ctx, typ, data); err != nil {
		p.t.Fatalf("pos write: %v", err)
	}
}

// answer answers f with resultCode and a payload naming the request.
func (p *pos) answer(f frame, resultCode int) []byte {
	p.t.Helper()
	b := p.answerBody(f, resultCode)
	p.write(websocket.MessageText, b)
	return b
}

// answerBody is the answer to f with resultCode and a payload naming the request.
func (p *pos) answerBody(f frame, resultCode int) []byte {
	b, _ := json.Marshal(map[string]any{"RequestID": f.RequestID, "ResultCode": resultCode, "ErrorMessage": nil,
		"MessageType": f.MessageType, "Payload": map[string]any{"echo": f.RequestID}})
	return b
}

// closed waits for the server to close the socket and returns the close code.
func (p *pos) closed() websocket.StatusCode {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		_, _, err := p.ws.Read(ctx)
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			p.t.Fatalf("socket ended without a close frame: %v", err)
		}
	}
}

// sender is an integrator with an access token of scope orderpay:send (or the scopes given).
type sender struct {
	inst *servertest.Instance
	tok  string
}

func newSender(t testing.TB, inst *servertest.Instance, scopes ...string) *sender {
	t.Helper()
	if len(scopes) == 0 {
		scopes = []string{"orderpay:send"}
	}
	tok, _ := inst.ClientToken(t, "integrator-"+strings.Join(scopes, "-"), "posgate", scopes...)
	return &sender{inst: inst, tok: tok}
}

// send posts body to o's requests with ?wait=wait ("" = the default).
func (s *sender) send(t testing.TB, providerOutletID, wait, body string) (int, http.Header, []byte) {
	t.Helper()
	path := "/v1/orderpay/outlets/" + providerOutletID + "/requests"
	if wait != "" {
		path += "?wait=" + wait
	}
	return do(t, s.inst, "POST", path, map[string]string{"Authorization": "Bearer " + s.tok, "Content-Type": "application/json"}, body)
}

func (s *sender) get(t testing.TB, providerOutletID, id string) (int, map[string]any) {
	t.Helper()
	st, _, body := do(t, s.inst, "GET", "/v1/orderpay/outlets/"+providerOutletID+"/requests/"+url.PathEscape(id),
		map[string]string{"Authorization": "Bearer " + s.tok}, "")
	var out map[string]any
	_ = json.Unmarshal(body, &out)
	return st, out
}

func jsonMap(t testing.TB, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("not a JSON object: %s", data)
	}
	return m
}

func compactJSON(t testing.TB, data []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		t.Fatalf("not JSON: %s", data)
	}
	return b.String()
}

// eventually polls cond every 20 ms for up to 10 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	wait.Until(t, what, cond)
}
