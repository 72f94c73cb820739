package doshii

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeFrame feeds arbitrary frames to the decoder of what posgate sends on a POS socket.
// Every accepted frame is exactly one of pong, health check or event; an event has a type within
// limits and data that is JSON; a pong's value is a JSON number.
func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"message","data":{"doshii":{"pong":1700000000000,"version":"v3"}}}`,
		`{"type":"message","data":{"doshii":{"pong":"x"}}}`,
		`{"type":"message","data":{"doshii":{"pong":1.5e12}}}`,
		`{"type":"message","data":"hello"}`,
		`{"type":"health_check","data":{"ping":1700000000000}}`,
		`{"type":"order_created","id":"ev-1","data":{"orderId":"o-1","items":[1,2]}}`,
		`{"type":"x","data":null,"id":"a"}`,
		`{"type":"x","type":"y"}`,
		`{"TYPE":"x","Data":{}}`,
		`{"type":"x"} {}`, `[]`, `null`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := decodeFrame(data)
		if err != nil {
			return
		}
		kinds := 0
		if fr.pong != nil {
			kinds++
			if _, err := fr.pong.Float64(); err != nil && !json.Valid([]byte(fr.pong.String())) {
				t.Fatalf("pong %q is not a number", *fr.pong)
			}
		}
		if fr.healthCheck {
			kinds++
		}
		if fr.event != nil {
			kinds++
			e := fr.event
			if e.Type == "" || len(e.Type) > maxEventType || len(e.ID) > maxEventID {
				t.Fatalf("accepted %q as %+v", data, e)
			}
			if e.Data != nil && !json.Valid(e.Data) {
				t.Fatalf("data %q is not JSON", e.Data)
			}
		}
		if kinds != 1 {
			t.Fatalf("%q decoded to %d kinds", data, kinds)
		}
	})
}
