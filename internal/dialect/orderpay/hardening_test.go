package orderpay_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/testutil/httpcheck"
)

// Strict input on orderpay's surfaces: a credential given twice or in two ways is refused, a
// wrong method is 405 with Allow in the surface's own shape, integrator bodies that are not
// UTF-8 (or say they are not) are refused, an oversized body is 413 in the surface's shape, and
// no error message carries a quote or a backslash.
func TestStrictInput(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{Configure: func(c *config.Config) { c.Server.MaxBodyBytes = 4096 }})
	o := createOutlet(t, inst, "outlet-1")
	s := newSender(t, inst)
	bearer := "Bearer " + s.tok
	reqs := "/v1/orderpay/outlets/" + o.ProviderOutletID + "/requests"
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	upgrade := func(kv ...string) http.Header {
		return h(append([]string{"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13",
			"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}, kv...)...)
	}
	pos := []string{"ErrorMessage"}
	api := []string{"error", "error_description"}
	for _, c := range []struct {
		name, method, path string
		header             http.Header
		body               string
		status             int
		allow              string
		shape              []string
	}{
		// The websocket: the ticket is the only credential; another one next to it is refused.
		{"ticket and an Authorization header", "GET", "/ws?token=" + ticket(t, inst, o), upgrade("Authorization", bearer), "", 400, "", pos},
		{"two Authorization headers on the upgrade", "GET", "/ws?token=" + ticket(t, inst, o), upgrade("Authorization", "Bearer a", "Authorization", "Bearer b"), "", 400, "", pos},
		{"POST on the websocket", "POST", "/ws", h("Content-Type", "application/json"), "{}", 405, "GET, HEAD", pos},
		{"GET on the auth endpoint", "GET", "/api/powerepos/v1/auth", nil, "", 405, "POST", pos},
		{"oversized auth body", "POST", "/api/powerepos/v1/auth", h("Content-Type", "application/json"), `{"x":"` + strings.Repeat("a", 9<<10) + `"}`, 413, "", pos},
		// The integrator API.
		{"two Authorization headers", "POST", reqs, h("Authorization", bearer, "Authorization", bearer, "Content-Type", "application/json"), `{"MessageType":1,"Payload":{}}`, 400, "", api},
		{"access_token query and header", "POST", reqs + "?access_token=" + s.tok, h("Authorization", bearer, "Content-Type", "application/json"), `{"MessageType":1,"Payload":{}}`, 400, "", api},
		{"PUT on requests", "PUT", reqs, h("Authorization", bearer), "", 405, "POST", api},
		{"DELETE on a request", "DELETE", reqs + "/r1", h("Authorization", bearer), "", 405, "GET, HEAD", api},
		{"body not UTF-8", "POST", reqs, h("Authorization", bearer, "Content-Type", "application/json"), "{\"MessageType\":1,\"Payload\":{\"n\":\"\xff\"}}", 400, "", api},
		{"charset latin1", "POST", reqs, h("Authorization", bearer, "Content-Type", "application/json; charset=iso-8859-1"), `{"MessageType":1,"Payload":{}}`, 415, "", api},
		{"oversized body", "POST", reqs, h("Authorization", bearer, "Content-Type", "application/json"), `{"MessageType":1,"Payload":{"x":"` + strings.Repeat("a", 8<<10) + `"}}`, 413, "", api},
	} {
		st, hdr, body := httpcheck.Do(t, inst.Client, c.method, inst.URL+c.path, c.header, c.body)
		if st != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, st, body, c.status)
			continue
		}
		if c.allow != "" && hdr.Get("Allow") != c.allow {
			t.Errorf("%s: Allow %q, want %q", c.name, hdr.Get("Allow"), c.allow)
		}
		m := httpcheck.ErrorBody(t, c.name, body, c.shape...)
		if c.status == 400 && c.shape[0] == "error" && m["error"] != "invalid_request" || c.status == 405 && c.shape[0] == "error" && m["error"] != "method_not_allowed" {
			t.Errorf("%s: error %v, want invalid_request", c.name, m["error"])
		}
	}
}
