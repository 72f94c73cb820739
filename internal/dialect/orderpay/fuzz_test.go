package orderpay

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/hub"
	"github.com/posgate/posgate/internal/jsonx"
	"github.com/posgate/posgate/internal/store"
)

// FuzzAuthBody: parseAuthBody never panics; what it accepts has the three fields non-empty and
// within their limits and is a JSON object without repeated keys; every refusal is BadInput.
func FuzzAuthBody(f *testing.F) {
	for _, s := range []string{
		`{"ProviderOutletID":"o1","POSRemoteID":"p1","AuthSecret":"s"}`,
		`{"providerOutletId":"o1","posRemoteId":"p1","authSecret":"s","extra":[1,{"a":null}]}`,
		`{"ProviderOutletID":"o1","provideroutletid":"o2","POSRemoteID":"p1","AuthSecret":"s"}`,
		`{"ProviderOutletID":"o\u0000","POSRemoteID":"\ud800","AuthSecret":"\u00e9"}`,
		`{"ProviderOutletID":1,"POSRemoteID":null,"AuthSecret":true}`,
		`[]`, `{}`, ``, `{"a":`, `"x"`, `{"ProviderOutletID":"o1"}{}`,
		`{"ſ":1,"s":2}`, `{"K":1,"k":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := parseAuthBody(data)
		if err != nil {
			if errs.KindOf(err) != errs.BadInput {
				t.Fatalf("refusal of kind %v: %v", errs.KindOf(err), err)
			}
			return
		}
		if a.ProviderOutletID == "" || a.POSRemoteID == "" || a.AuthSecret == "" ||
			len(a.ProviderOutletID) > maxOutletID || len(a.POSRemoteID) > maxOutletID || len(a.AuthSecret) > maxAuthSecret ||
			!utf8.ValidString(a.ProviderOutletID) || !utf8.ValidString(a.POSRemoteID) {
			t.Fatalf("accepted %+v from %q", a, data)
		}
		if jsonx.CheckObject(data) != nil {
			t.Fatalf("accepted a body CheckObject refuses: %q", data)
		}
	})
}

// FuzzSendBody: parseSendBody never panics; what it accepts builds a frame that is a JSON object
// with every request field, the caller's values and the protocol's limits.
// frameOfReference is frameOf as json.Marshal writes it (as frameOf did before it wrote the
// bytes by hand): the frame, and the hash stored with every request since.
func frameOfReference(t testing.TB, o *store.OrderpayOutlet, req sendRequest, requestID string) (frame, hash []byte) {
	var payload bytes.Buffer
	if err := json.Compact(&payload, req.Payload); err != nil {
		t.Fatal(err)
	}
	f := requestFrame{ProviderID: o.ProviderID, ProviderName: o.ProviderName, MessageType: *req.MessageType,
		Payload: payload.Bytes(), RequestID: requestID}
	if req.DeviceID != nil {
		f.DeviceID = *req.DeviceID
	}
	if req.UserIdentifier != nil {
		f.UserIdentifier = *req.UserIdentifier
	}
	frame, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	asked, _ := json.Marshal([]any{f.DeviceID, f.UserIdentifier, f.MessageType, json.RawMessage(f.Payload)})
	h := sha256.Sum256(asked)
	return frame, h[:]
}

// The frame and the request's hash are byte for byte what json.Marshal wrote: HTML characters
// and U+2028 escaped, white space dropped, in every field.
func TestFrameOfAsMarshal(t *testing.T) {
	o := &store.OrderpayOutlet{ProviderID: -7, ProviderName: "Café <&> \u2028"}
	for _, body := range []string{
		`{"MessageType":1,"Payload":{"a":1}}`,
		"{\"DeviceID\":\"d<&>\\\"\\u2028\u2029\",\"UserIdentifier\":\"ü\",\"MessageType\":-12,\"Payload\": [ 1 , \"<b>&amp;\u2028\" , {\"k\" : null} ] ,\"RequestID\":\"r<1>\"}",
		`{"MessageType":9223372036854775807,"Payload":"\u003c\ud83d\ude00"}`,
	} {
		req, err := parseSendBody([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		id := "generated"
		if req.RequestID != nil {
			id = *req.RequestID
		}
		frame, hash, err := frameOf(o, req, id)
		if err != nil {
			t.Fatal(err)
		}
		if rf, rh := frameOfReference(t, o, req, id); !bytes.Equal(frame, rf) || !bytes.Equal(hash, rh) {
			t.Fatalf("frame %s, json.Marshal's %s (hashes equal: %v)", frame, rf, bytes.Equal(hash, rh))
		}
	}
}

func FuzzSendBody(f *testing.F) {
	for _, s := range []string{
		`{"MessageType":1,"Payload":{"a":1}}`,
		`{"DeviceID":"d","UserIdentifier":"u","MessageType":12,"Payload":[1,2],"RequestID":"r-1"}`,
		`{"MessageType":1.5,"Payload":{}}`, `{"MessageType":"1","Payload":{}}`,
		`{"MessageType":1,"Payload":null}`, `{"MessageType":1}`, `{"Payload":{}}`,
		`{"MessageType":1,"messagetype":2,"Payload":{}}`, `{"MessageType":1,"Payload":{},"ProviderID":1}`,
		`{"MessageType":9223372036854775807,"Payload":"` + strings.Repeat("x", 100) + `"}`,
		`{"MessageType":-1,"Payload":{},"RequestID":"\u0000"}`, `[]`, ``,
		"{\"MessageType\":1,\"Payload\":{\"n\":\"\xff\"}}",
	} {
		f.Add([]byte(s))
	}
	o := &store.OrderpayOutlet{ProviderID: 321, ProviderName: "P"}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := parseSendBody(data)
		if err != nil {
			if errs.KindOf(err) != errs.BadInput {
				t.Fatalf("refusal of kind %v: %v", errs.KindOf(err), err)
			}
			return
		}
		id := "generated"
		if req.RequestID != nil {
			id = *req.RequestID
		}
		frame, hash, err := frameOf(o, req, id)
		if err != nil {
			if errs.KindOf(err) != errs.BadInput {
				t.Fatalf("frame refusal of kind %v: %v", errs.KindOf(err), err)
			}
			return
		}
		if rf, rh := frameOfReference(t, o, req, id); !bytes.Equal(frame, rf) || !bytes.Equal(hash, rh) {
			t.Fatalf("frame %s, json.Marshal's %s (hashes equal: %v)", frame, rf, bytes.Equal(hash, rh))
		}
		var back map[string]json.RawMessage
		if json.Unmarshal(frame, &back) != nil || len(back) != 7 || len(hash) != 32 {
			t.Fatalf("frame %s from %q", frame, data)
		}
		var got requestFrame
		if err := json.Unmarshal(frame, &got); err != nil || got.RequestID != id || got.MessageType != *req.MessageType ||
			utf8.RuneCountInString(got.DeviceID) > maxDeviceID || utf8.RuneCountInString(got.UserIdentifier) > maxUserIdentifier ||
			utf8.RuneCountInString(got.RequestID) > maxRequestID {
			t.Fatalf("frame %s from %q", frame, data)
		}
	})
}

// parseAnswerReference is parseAnswer reading every key of the message, as it did before it
// asked encoding/json for RequestID alone.
func parseAnswerReference(data []byte) (answer, error) {
	if jsonx.CheckObject(data) != nil {
		return answer{}, errMalformed
	}
	return parseAnswerKeys(data)
}

// parseAnswer finds the RequestID that reading every key finds, whatever its spelling: in other
// letter cases, through escapes, with the Kelvin sign or the long s that encoding/json folds, and
// with U+0130, which only jsonx.FoldKey folds.
func TestParseAnswerMatchesEveryKey(t *testing.T) {
	for _, s := range []string{
		`{"RequestID":"r-1","Payload":{"RequestID":"inner"}}`, `{"requestid":"r-2"}`, `{"REQUESTID":"r-3"}`,
		`{"Request\u0049D":"r-4"}`, `{"reque\u017ftid":"r-5"}`, "{\"reque\u017ftid\":\"r-6\"}",
		"{\"requestI\u212a\":\"r-7\"}", "{\"request\u0130d\":\"r-8\"}", "{\"request\u0130d\":5}",
		`{"RequestID":null}`, `{"RequestID":5}`, `{"RequestID":""}`, `{"Payload":{}}`, `{"RequestID":"a","requestid":"b"}`,
	} {
		a, err := parseAnswer([]byte(s))
		ref, rerr := parseAnswerReference([]byte(s))
		if a != ref || (err == nil) != (rerr == nil) {
			t.Errorf("%s: %q, %v; reading every key: %q, %v", s, a.RequestID, err, ref.RequestID, rerr)
		}
	}
	if a, err := parseAnswer([]byte("{\"request\u0130d\":\"r-8\"}")); err != nil || a.RequestID != "r-8" {
		t.Fatalf("U+0130: %q, %v", a.RequestID, err)
	}
}

// BenchmarkParseAnswer reads the answer every simulated POS sends.
func BenchmarkParseAnswer(b *testing.B) {
	msg := []byte(`{"RequestID":"r-4471","ResultCode":0,"ErrorMessage":null,"MessageType":1,"Payload":{"OrderID":"12345","Status":"OK"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseAnswer(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzAnswer: parseAnswer (the codec of POS messages) never panics; it either closes with 1008
// or returns a RequestID within limits that the message really carries.
func FuzzAnswer(f *testing.F) {
	for _, s := range []string{
		`{"RequestID":"r-1","ResultCode":0,"ErrorMessage":null,"MessageType":1,"Payload":{}}`,
		`{"requestId":"r-1","resultCode":4,"errorMessage":"no user found"}`,
		`{"RequestID":"a","requestid":"b"}`, `{"RequestID":5}`, `{"RequestID":""}`, `{"ResultCode":0}`,
		`{"RequestID":"` + strings.Repeat("r", 300) + `"}`, `{"RequestID":"\ud800"}`, `[]`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := parseAnswer(data)
		if ref, rerr := parseAnswerReference(data); ref != a || (rerr == nil) != (err == nil) {
			t.Fatalf("parseAnswer(%q) = %q, %v; reading every key: %q, %v", data, a.RequestID, err, ref.RequestID, rerr)
		}
		if err != nil {
			ce, ok := err.(*hub.CloseError)
			if !ok || ce.Code != hub.CodePolicy {
				t.Fatalf("refusal %v", err)
			}
			return
		}
		if a.RequestID == "" || len(a.RequestID) > maxRequestID || !utf8.ValidString(a.RequestID) {
			t.Fatalf("accepted RequestID %q", a.RequestID)
		}
		var m map[string]any
		if json.Unmarshal(data, &m) != nil {
			t.Fatalf("accepted non-JSON %q", data)
		}
	})
}
