package doshii_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/testutil/httpcheck"
)

// signedVendorJWT signs an arbitrary payload with the vendor key (HS256).
func signedVendorJWT(payload, key string) string {
	b64 := base64.RawURLEncoding.EncodeToString
	in := b64([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + b64([]byte(payload))
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(in))
	return in + "." + b64(mac.Sum(nil))
}

// Strict input on doshii's hub surfaces (the sockets and the platform events API): a credential
// given twice or in two ways is refused, a wrong method is 405 with Allow in the surface's own
// shape, event bodies that are not UTF-8 (or say they are not) are refused, an oversized body is
// 413 in the surface's shape, no error message carries a quote or a backslash, and a cloud
// socket's vendor JWT with a past exp, a future nbf or claims that are not UTF-8 is refused even
// inside the timestamp window.
func TestStrictInput(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{Configure: func(c *config.Config) { c.Server.MaxBodyBytes = 4096 }})
	e := &e2e{t: t, inst: inst}
	a := e.onboard("vendor-a", "Org A", "Venue A")
	tok := publisher(t, inst, "doshii:publish")
	bearer := "Bearer " + tok
	events := "/v1/doshii/locations/" + a.id + "/events"
	h, upgrade := httpcheck.Header, httpcheck.Upgrade
	now := time.Now().Unix()
	ts := func(n int64) string { return strconv.FormatInt(n, 10) }
	cloud := func(payload string) string {
		return "/vendor/socket?vendor=vendor-a&token=" + url.QueryEscape(signedVendorJWT(payload, a.vendorKey))
	}
	msg := []string{"message"}
	api := []string{"error", "error_description"}
	httpcheck.Run(t, inst.Client, inst.URL, []httpcheck.Case{
		httpcheck.C("location token and an Authorization header", "GET", posQuery(a), upgrade("Authorization", "Bearer "+a.token), "", 400, "", msg),
		httpcheck.C("two Authorization headers on the POS socket", "GET", posQuery(a), upgrade("Authorization", "Bearer x", "Authorization", "Bearer y"), "", 400, "", msg),
		httpcheck.C("vendor JWT and an Authorization header", "GET", vendorQuery(a, time.Now()), upgrade("Authorization", "Bearer "+a.vendorKey), "", 400, "", msg),
		httpcheck.C("POST on the POS socket", "POST", "/pos/socket", h("Content-Type", "application/json"), "{}", 405, "GET, HEAD", msg),
		httpcheck.C("DELETE on the cloud socket", "DELETE", "/vendor/socket", nil, "", 405, "GET, HEAD", msg),
		httpcheck.C("vendor JWT with a past exp", "GET", cloud(`{"vendor":"vendor-a","timestamp":`+ts(now)+`,"exp":`+ts(now-10)+`}`), upgrade(), "", 401, "", msg),
		httpcheck.C("vendor JWT with a future nbf", "GET", cloud(`{"vendor":"vendor-a","timestamp":`+ts(now)+`,"nbf":`+ts(now+300)+`}`), upgrade(), "", 401, "", msg),
		httpcheck.C("vendor JWT with claims that are not UTF-8", "GET", cloud("{\"vendor\":\"vendor-a\",\"timestamp\":"+ts(now)+",\"x\":\"\xff\"}"), upgrade(), "", 401, "", msg),
		httpcheck.C("two Authorization headers on events", "POST", events, h("Authorization", bearer, "Authorization", bearer, "Content-Type", "application/json"), `{"type":"x","data":{}}`, 400, "", api),
		httpcheck.C("access_token query and header", "POST", events+"?access_token="+tok, h("Authorization", bearer, "Content-Type", "application/json"), `{"type":"x","data":{}}`, 400, "", api),
		httpcheck.C("PUT on events", "PUT", events, h("Authorization", bearer), "", 405, "POST", api),
		httpcheck.C("POST on an event", "POST", events+"/ev-1", h("Authorization", bearer), "", 405, "GET, HEAD", api),
		httpcheck.C("event body not UTF-8", "POST", events, h("Authorization", bearer, "Content-Type", "application/json"), "{\"type\":\"x\",\"data\":{\"n\":\"\xff\"}}", 400, "", api),
		httpcheck.C("charset latin1", "POST", events, h("Authorization", bearer, "Content-Type", "application/json; charset=iso-8859-1"), `{"type":"x","data":{}}`, 415, "", api),
		httpcheck.C("oversized event", "POST", events, h("Authorization", bearer, "Content-Type", "application/json"), `{"type":"x","data":{"x":"`+strings.Repeat("a", 70<<10)+`"}}`, 413, "", api),
	})
	// The same JWT without the refused claims opens the socket: the refusals were the claims'.
	mustDial(t, inst, cloud(`{"vendor":"vendor-a","timestamp":`+ts(now)+`,"exp":`+ts(now+600)+`,"nbf":`+ts(now-5)+`}`)).heartbeat("1")
}
