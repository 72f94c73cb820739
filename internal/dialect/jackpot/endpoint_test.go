package jackpot

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/errs"
)

func TestDecodeTokenRequest(t *testing.T) {
	cases := []struct {
		body    string
		want    tokenRequest
		wantErr string
	}{
		{`{"grant_type":"client_credentials","client_id":"a","client_secret":"b"}`, tokenRequest{GrantType: "client_credentials", ClientID: "a", ClientSecret: "b"}, ""},
		{`{"grant_type":"g","client_id":"a","assertion":"x.y.z","scope":"ignored","n":1,"o":{"p":[1]}}`, tokenRequest{GrantType: "g", ClientID: "a", Assertion: "x.y.z"}, ""},
		{`{"grant_type":null,"client_id":""}`, tokenRequest{}, ""},
		{` {"grant_type":"g"} `, tokenRequest{GrantType: "g"}, ""},
		{`{"grant_type":"a","grant_type":"b"}`, tokenRequest{}, "repeats a member"},
		{`{"client_id":"a","CLIENT_ID":"b"}`, tokenRequest{}, "repeats a member"},
		{`{"o":{"k":1,"k":2}}`, tokenRequest{}, "repeats a member"},
		{`{"grant_type":1}`, tokenRequest{}, "grant_type must be a string"},
		{`{"assertion":{"a":1}}`, tokenRequest{}, "assertion must be a string"},
		{`{"client_secret":true}`, tokenRequest{}, "client_secret must be a string"},
		{`[]`, tokenRequest{}, "one JSON object"},
		{`{}{}`, tokenRequest{}, "one JSON object"},
		{`{"a":`, tokenRequest{}, "one JSON object"},
		{``, tokenRequest{}, "one JSON object"},
		{`"x"`, tokenRequest{}, "one JSON object"},
	}
	for _, tc := range cases {
		req, oe := decodeTokenRequest([]byte(tc.body))
		if tc.wantErr != "" {
			if oe == nil || oe.status != 400 || oe.code != "invalid_request" || !strings.Contains(oe.desc, tc.wantErr) {
				t.Errorf("%s: got %+v, want invalid_request %q", tc.body, oe, tc.wantErr)
			}
			continue
		}
		if oe != nil || *req != tc.want {
			t.Errorf("%s: got %+v %+v, want %+v", tc.body, req, oe, tc.want)
		}
	}
}

func TestWriteErrorShapes(t *testing.T) {
	cases := []struct {
		err       error
		challenge string
		status    int
		message   string
		header    map[string]string
	}{
		{errBadAPIKey, `APIKey realm="jackpot"`, 401, "invalid API key", map[string]string{"WWW-Authenticate": `APIKey realm="jackpot"`}},
		{auth.ErrNoCredential, `Bearer realm="jackpot"`, 401, "credential is missing", map[string]string{"WWW-Authenticate": `Bearer realm="jackpot"`}},
		{errs.New(errs.Forbidden, "credential_not_accepted", "this route does not accept an API key"), "x", 403, "this route does not accept an API key", map[string]string{"WWW-Authenticate": ""}},
		{errs.New(errs.Forbidden, "amount_exceeded", "price is above the session's amount"), "", 403, "price is above the session's amount", nil},
		{&errs.Error{Kind: errs.Throttled, Code: "too_many_attempts", Message: "slow down", RetryAfter: 1500 * time.Millisecond}, "", 429, "slow down", map[string]string{"Retry-After": "2"}},
		{errStore, "", 503, errStore.Message, map[string]string{"Retry-After": "5"}},
		{errs.New(errs.Unavailable, "upstream_timeout", "the upstream did not answer in time"), "", 504, "the upstream did not answer in time", nil},
		{errs.New(errs.Unavailable, "upstream_unreachable", "the upstream is unreachable"), "", 502, "the upstream is unreachable", nil},
		{errs.New(errs.BadInput, "invalid_body", "body is not JSON"), "", 400, "body is not JSON", nil},
		{errs.New(errs.Internal, "boom", "secret detail"), "", 500, "internal error", nil},
		{errTest("plain"), "", 500, "internal error", nil},
	}
	for _, tc := range cases {
		w := httptest.NewRecorder()
		writeError(w, tc.err, tc.challenge)
		var body map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("%v: body %q", tc.err, w.Body.String())
		}
		if w.Code != tc.status || len(body) != 3 || body["statusCode"] != float64(tc.status) ||
			body["error"] != http.StatusText(tc.status) || body["message"] != tc.message {
			t.Errorf("%v: got %d %s", tc.err, w.Code, w.Body.String())
		}
		for k, v := range tc.header {
			if got := w.Header().Get(k); got != v {
				t.Errorf("%v: header %s=%q, want %q", tc.err, k, got, v)
			}
		}
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }

func TestBearerToken(t *testing.T) {
	cases := []struct {
		headers []string
		raw     string
		present bool
	}{
		{nil, "", false},
		{[]string{"Basic dXNlcjpwYXNz"}, "", false},
		{[]string{"Bearer abc.def.ghi"}, "abc.def.ghi", true},
		{[]string{"bearer   abc.def.ghi  "}, "abc.def.ghi", true},
		{[]string{"Bearer "}, "", true},
		{[]string{"Bearer a b"}, "", true},
		{[]string{"Bearer a", "Bearer b"}, "", true},
	}
	for _, tc := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		for _, h := range tc.headers {
			r.Header.Add("Authorization", h)
		}
		raw, present := bearerToken(r)
		if raw != tc.raw || present != tc.present {
			t.Errorf("%q: got %q %v", tc.headers, raw, present)
		}
	}
}

func TestSessionClaims(t *testing.T) {
	got := sessionClaims(map[string]any{"gty": "jwt-bearer", "amount": json.Number("12.5"), "notificationKey": "n", "userId": json.Number("7"), "forceManualConfirm": false, "iss": "x"})
	if got["amount"] != 12.5 || got["notificationKey"] != "n" || got["userId"] != json.Number("7") || got["forceManualConfirm"] != false || len(got) != 4 {
		t.Fatalf("got %v", got)
	}
	got = sessionClaims(map[string]any{"amount": 3.0, "notificationKey": "n"})
	if got["amount"] != 3.0 || len(got) != 2 {
		t.Fatalf("got %v", got)
	}
}

func TestSettings(t *testing.T) {
	s, err := settingsFrom(configJackpot(3600, 3600, 300, 60, 86400))
	if err != nil || s.sessionLifetime != time.Hour || s.window.Past != 300*time.Second || s.window.Future != time.Minute || s.keyOverlap != 24*time.Hour {
		t.Fatalf("%+v %v", s, err)
	}
	if s, err := settingsFrom(configJackpot(1, 1, 0, 0, 0)); err != nil || s.window.Past != 0 || s.keyOverlap != 0 {
		t.Fatalf("zero windows must be allowed: %+v %v", s, err)
	}
	for _, bad := range [][5]int{{0, 1, 1, 1, 1}, {1, 0, 1, 1, 1}, {1, 1, -1, 1, 1}, {1, 1, 1, -1, 1}, {1, 1, 1, 1, -1}} {
		if _, err := settingsFrom(configJackpot(bad[0], bad[1], bad[2], bad[3], bad[4])); err == nil || !strings.Contains(err.Error(), "jackpot.") {
			t.Errorf("%v: err %v", bad, err)
		}
	}
}

func configJackpot(session, m2m, past, future, overlap int) config.Jackpot {
	return config.Jackpot{SessionLifetime: session, M2MLifetime: m2m, IatPast: past, IatFuture: future, KeyOverlap: overlap}
}
