package chef

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/jsonrpc"
)

// FuzzIdentity: whatever authenticateClient's params and User-Agent, parsing the identity never
// panics, and what it keeps is printable and bounded; the device key always splits back into the
// device id.
func FuzzIdentity(f *testing.F) {
	for _, s := range []string{
		`[{}]`, `[{"device_id":"POS-1","device_name":"Front"}]`, `{"deviceId":"a","deviceName":"b"}`,
		`[{"device_id":"a","deviceId":"a"}]`, `[{"device_id":"a","deviceId":"b"}]`, `[1]`, `[{},{}]`, `[]`,
		`[{"device_id":"` + strings.Repeat("x", 200) + `"}]`, `[{"device_id":"\u0000"}]`, `[{"device_name":5}]`,
	} {
		f.Add([]byte(s), "Till/1.0")
	}
	f.Fuzz(func(t *testing.T, params []byte, ua string) {
		if !json.Valid(params) {
			return
		}
		b, perr := jsonrpc.Parse([]byte(`{"jsonrpc":"2.0","method":"m","params":`+string(params)+`,"id":1}`), jsonrpc.Limits{})
		if perr != nil || b.Calls[0].Err != nil {
			return
		}
		r := httptest.NewRequest("POST", "/api/json-rpc/v1", nil)
		r.Header.Set("User-Agent", ua)
		id, e := parseIdentity(b.Calls[0].Params, r)
		if e != nil {
			if e.Code != jsonrpc.CodeInvalidParams {
				t.Fatalf("code %d", e.Code)
			}
			return
		}
		if utf8.RuneCountInString(id.deviceID) > maxDeviceIDLen || utf8.RuneCountInString(id.label) > maxLabelLen || len(id.userAgent) > maxUserAgentLen {
			t.Fatalf("too long: %q %q %q", id.deviceID, id.label, id.userAgent)
		}
		for _, s := range []string{id.deviceID, id.label, id.userAgent} {
			if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("not printable: %q", s)
			}
		}
		if got := deviceIDOfKey(id.key()); got != id.deviceID {
			t.Fatalf("key %q gives device id %q, want %q", id.key(), got, id.deviceID)
		}
	})
}
