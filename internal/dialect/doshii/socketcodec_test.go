package doshii

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeHeartbeat(t *testing.T) {
	for _, c := range []struct {
		in      string
		ping    string
		version string
		code    int // 0: accepted
	}{
		{`{"doshii":{"ping":1700000000123,"version":"1.2.3"}}`, "1700000000123", "1.2.3", 0},
		{` {"doshii":{"version":"x","ping":1.7e12}} `, "1.7e12", "x", 0},
		{`{"doshii":{"ping":-1}}`, "-1", "", 0},
		{`{"doshii":{"ping":5,"version":null,"extra":[1,2]}}`, "5", "", 0},
		{`{"doshii":{"ping":"1700000000123","version":"1"}}`, "", "", ClosePolicy},
		{`{"doshii":{"ping":null}}`, "", "", ClosePolicy},
		{`{"doshii":{"ping":true}}`, "", "", ClosePolicy},
		{`{"doshii":{"ping":{}}}`, "", "", ClosePolicy},
		{`{"doshii":{"ping":[1]}}`, "", "", ClosePolicy},
		{`{"doshii":{"version":"1"}}`, "", "", ClosePolicy},
		{`{"doshii":{"ping":1,"version":7}}`, "", "", ClosePolicy},
		{`{"doshii":{"ping":1,"version":"` + strings.Repeat("v", 65) + `"}}`, "", "", ClosePolicy},
		{`{"doshii":{"ping":1` + strings.Repeat("0", 40) + `}}`, "", "", ClosePolicy},
		{`{"Doshii":{"ping":1}}`, "", "", ClosePolicy},
		{`{"doshii":{"ping":1},"type":"x"}`, "", "", ClosePolicy},
		{`{"doshii":{"ping":1,"ping":2}}`, "", "", ClosePolicy},
		{`{"doshii":{"ping":1,"PING":2}}`, "", "", ClosePolicy},
		{`{"doshii":[]}`, "", "", ClosePolicy},
		{`{"doshii":null}`, "", "", ClosePolicy},
		{`{}`, "", "", ClosePolicy},
		{`[]`, "", "", ClosePolicy},
		{`hello`, "", "", ClosePolicy},
		{`{"doshii":{"ping":1}}{}`, "", "", ClosePolicy},
		{"{\"doshii\":{\"ping\":1,\"version\":\"\xff\"}}", "", "", CloseNotUTF8},
		{`{"doshii":{"ping":1,"version":"` + strings.Repeat("v", 5000) + `"}}`, "", "", CloseTooBig},
	} {
		hb, err := DecodeHeartbeat([]byte(c.in))
		if c.code == 0 {
			if err != nil || hb.Ping != c.ping || hb.Version != c.version {
				t.Errorf("%.60s: got %+v, %v; want ping %s version %q", c.in, hb, err, c.ping, c.version)
			}
			continue
		}
		var fe *FrameError
		if !errors.As(err, &fe) || fe.Code != c.code {
			t.Errorf("%.60s: got %+v, %v; want close code %d", c.in, hb, err, c.code)
		}
	}
}

func TestFrames(t *testing.T) {
	hb, err := DecodeHeartbeat([]byte(`{"doshii":{"ping":1700000000123,"version":"pos 9"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(AppendPong(nil, hb)), `{"type":"message","data":{"doshii":{"pong":1700000000123,"version":"v3"}}}`; got != want {
		t.Errorf("pong %s, want %s", got, want)
	}
	if got, want := string(AppendHealthCheck(nil, 1700000000456)), `{"type":"health_check","data":{"ping":1700000000456}}`; got != want {
		t.Errorf("health_check %s, want %s", got, want)
	}
	got := string(AppendEvent(nil, "ev_1", "dl_2", "order_created", []byte(`{"orderId":"o<1>"}`)))
	if want := `{"type":"order_created","data":{"orderId":"o<1>"},"id":"ev_1","locationId":"dl_2"}`; got != want {
		t.Errorf("event %s, want %s", got, want)
	}
}

// FuzzSocketCodec drives the inbound decoder and the outbound encoders. Whatever is accepted is
// a heartbeat whose pong is valid JSON carrying the same number; whatever is refused names a
// close code of the documented set; an encoded event is valid JSON that decodes to what went in.
func FuzzSocketCodec(f *testing.F) {
	for _, s := range []string{
		`{"doshii":{"ping":1700000000123,"version":"1.2.3"}}`,
		`{"doshii":{"ping":1.7e12}}`,
		`{"doshii":{"ping":"1"}}`,
		`{"doshii":{"ping":1,"ping":2}}`,
		`{"doshii":{"ping":1,"version":"\u00e9\ud83d\ude00"}}`,
		`{"doshii":{"ping":-0.5e-3,"version":null,"x":{"y":[1,{"z":2}]}}}`,
		"{\"doshii\":{\"ping\":1,\"version\":\"\xc3\"}}",
		`{"type":"message"}`,
		`not json`,
		``,
	} {
		f.Add([]byte(s), "order_created", `{"a":1}`)
	}
	f.Fuzz(func(t *testing.T, frame []byte, typ, data string) {
		hb, err := DecodeHeartbeat(frame)
		if err != nil {
			var fe *FrameError
			if !errors.As(err, &fe) {
				t.Fatalf("refusal without a close code: %v", err)
			}
			switch fe.Code {
			case CloseNotUTF8, ClosePolicy, CloseTooBig:
			default:
				t.Fatalf("close code %d", fe.Code)
			}
			if len(frame) >= 8 && strings.Contains(fe.Reason, string(frame)) {
				t.Fatalf("reason echoes the frame: %q", fe.Reason)
			}
		} else {
			pong := AppendPong(nil, hb)
			var v struct {
				Type string `json:"type"`
				Data struct {
					Doshii struct {
						Pong    json.Number `json:"pong"`
						Version string      `json:"version"`
					} `json:"doshii"`
				} `json:"data"`
			}
			dec := json.NewDecoder(bytes.NewReader(pong))
			dec.UseNumber()
			if err := dec.Decode(&v); err != nil || v.Type != "message" || string(v.Data.Doshii.Pong) != hb.Ping ||
				v.Data.Doshii.Version != APIVersion {
				t.Fatalf("pong %s for %q: %+v %v", pong, frame, v, err)
			}
		}
		if !utf8.ValidString(typ) || !json.Valid([]byte(data)) {
			return
		}
		var compact bytes.Buffer
		if json.Compact(&compact, []byte(data)) != nil || compact.Len() == 0 || compact.Bytes()[0] != '{' {
			return
		}
		ev := AppendEvent(nil, "ev_"+typ, "dl_x", typ, compact.Bytes())
		var back struct {
			Type       string          `json:"type"`
			Data       json.RawMessage `json:"data"`
			ID         string          `json:"id"`
			LocationID string          `json:"locationId"`
		}
		if err := json.Unmarshal(ev, &back); err != nil || back.Type != typ || back.ID != "ev_"+typ ||
			back.LocationID != "dl_x" || !bytes.Equal(back.Data, compact.Bytes()) {
			t.Fatalf("event %s: %+v %v", ev, back, err)
		}
	})
}

// FuzzEventBody drives the events API's body parser. Whatever is accepted has a type and an id
// of the documented alphabets, is not a protocol frame type, and carries data that is a compact
// JSON object of valid UTF-8; its event frame is valid JSON.
func FuzzEventBody(f *testing.F) {
	for _, s := range []string{
		`{"type":"order_created","data":{"orderId":"1"},"id":"ev-1"}`,
		`{"type":"order_created","data":{ "a" : [1, 2] }}`,
		`{"type":"message","data":{}}`,
		`{"type":"x","data":[]}`,
		`{"type":"x","data":{},"id":"a/b"}`,
		`{"type":"x","type":"y","data":{}}`,
		`{"type":"x","data":{},"extra":1}`,
		`{"Type":"x","data":{}}`,
		`not json`,
		"{\"type\":\"x\",\"data\":{\"n\":\"\xff\"}}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := parseEvent(body, func() string { return "ev_generated" })
		if err != nil {
			return
		}
		if !utf8.Valid(ev.data) {
			t.Fatalf("accepted data that is not UTF-8: %q", ev.data)
		}
		if !eventTypePattern.MatchString(ev.typ) || ev.typ == "message" || ev.typ == "health_check" ||
			!eventIDPattern.MatchString(ev.id) {
			t.Fatalf("accepted type %q id %q from %q", ev.typ, ev.id, body)
		}
		var compact bytes.Buffer
		if len(ev.data) == 0 || ev.data[0] != '{' || json.Compact(&compact, ev.data) != nil || !bytes.Equal(compact.Bytes(), ev.data) {
			t.Fatalf("data %q is not a compact object", ev.data)
		}
		if !json.Valid(AppendEvent(nil, ev.id, "dl_x", ev.typ, ev.data)) {
			t.Fatalf("frame for %q is not JSON", body)
		}
	})
}
