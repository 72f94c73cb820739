package orderpay_test

import (
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
	h, upgrade := httpcheck.Header, httpcheck.Upgrade
	pos := []string{"ErrorMessage"}
	api := []string{"error", "error_description"}
	httpcheck.Run(t, inst.Client, inst.URL, []httpcheck.Case{
		// The websocket: the ticket is the only credential; another one next to it is refused.
		httpcheck.C("ticket and an Authorization header", "GET", "/ws?token="+ticket(t, inst, o), upgrade("Authorization", bearer), "", 400, "", pos),
		httpcheck.C("two Authorization headers on the upgrade", "GET", "/ws?token="+ticket(t, inst, o), upgrade("Authorization", "Bearer a", "Authorization", "Bearer b"), "", 400, "", pos),
		httpcheck.C("POST on the websocket", "POST", "/ws", h("Content-Type", "application/json"), "{}", 405, "GET, HEAD", pos),
		httpcheck.C("GET on the auth endpoint", "GET", "/api/powerepos/v1/auth", nil, "", 405, "POST", pos),
		httpcheck.C("oversized auth body", "POST", "/api/powerepos/v1/auth", h("Content-Type", "application/json"), `{"x":"`+strings.Repeat("a", 9<<10)+`"}`, 413, "", pos),
		// The integrator API.
		httpcheck.C("two Authorization headers", "POST", reqs, h("Authorization", bearer, "Authorization", bearer, "Content-Type", "application/json"), `{"MessageType":1,"Payload":{}}`, 400, "", api),
		httpcheck.C("access_token query and header", "POST", reqs+"?access_token="+s.tok, h("Authorization", bearer, "Content-Type", "application/json"), `{"MessageType":1,"Payload":{}}`, 400, "", api),
		httpcheck.C("PUT on requests", "PUT", reqs, h("Authorization", bearer), "", 405, "POST", api),
		httpcheck.C("DELETE on a request", "DELETE", reqs+"/r1", h("Authorization", bearer), "", 405, "GET, HEAD", api),
		httpcheck.C("body not UTF-8", "POST", reqs, h("Authorization", bearer, "Content-Type", "application/json"), "{\"MessageType\":1,\"Payload\":{\"n\":\"\xff\"}}", 400, "", api),
		httpcheck.C("charset latin1", "POST", reqs, h("Authorization", bearer, "Content-Type", "application/json; charset=iso-8859-1"), `{"MessageType":1,"Payload":{}}`, 415, "", api),
		httpcheck.C("oversized body", "POST", reqs, h("Authorization", bearer, "Content-Type", "application/json"), `{"MessageType":1,"Payload":{"x":"`+strings.Repeat("a", 8<<10)+`"}}`, 413, "", api),
	})
}
