package orderpay

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeRequest feeds arbitrary frames to the decoder of what posgate sends. Whatever it
// accepts has a RequestID within the protocol's limits, and the answer built for it is one JSON
// object carrying that RequestID and MessageType back.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"ProviderID":321,"ProviderName":"Acme","DeviceID":"","UserIdentifier":"","MessageType":1,"Payload":{"a":1},"RequestID":"r-1"}`,
		`{"requestid":"r","messagetype":0,"payload":null}`,
		`{"RequestID":"r","MessageType":12,"Payload":[1,"x",{"y":null}]}`,
		`{"RequestID":"r","MessageType":1e2}`,
		`{"RequestID":"r","MessageType":"1"}`,
		`{"RequestID":"r","MessageType":1,"ProviderID":-9223372036854775809}`,
		`{"RequestID":"\u0000\ud800","MessageType":1}`,
		`{"RequestID":"r","MessageType":1,"RequestID":"s"}`,
		`{"RequestID":"r","MessageType":1}{}`,
		`[]`, `null`, `"x"`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRequest(data)
		if err != nil {
			return
		}
		if r.RequestID == "" || len(r.RequestID) > MaxRequestID || len(r.DeviceID) > MaxDeviceID ||
			len(r.UserIdentifier) > MaxUserIdentifier || len(r.ProviderName) > MaxProviderName {
			t.Fatalf("accepted %q as %+v", data, r)
		}
		if r.Payload != nil && !json.Valid(r.Payload) {
			t.Fatalf("payload %q is not JSON", r.Payload)
		}
		var back struct {
			RequestID    string
			MessageType  int
			ResultCode   int
			ErrorMessage *string
		}
		frame := encodeAnswer(r, Answer{Payload: r.Payload})
		if err := json.Unmarshal(frame, &back); err != nil {
			t.Fatalf("answer %q: %v", frame, err)
		}
		if back.MessageType != r.MessageType || back.ResultCode != 0 || back.ErrorMessage != nil {
			t.Fatalf("answer %q for %+v", frame, r)
		}
		// A RequestID with invalid UTF-8 cannot travel back unchanged in JSON text; posgate's own
		// ids are ASCII, so compare only what JSON can carry.
		if json.Valid([]byte(`"`+r.RequestID+`"`)) && back.RequestID != r.RequestID {
			t.Fatalf("RequestID %q came back as %q", r.RequestID, back.RequestID)
		}
	})
}
