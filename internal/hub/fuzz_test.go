package hub

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/coder/websocket"
)

func TestCheckMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  websocket.MessageType
		data []byte
		max  int64
		want Code
	}{
		{"json", websocket.MessageText, []byte(`{"a":1}`), 1024, 0},
		{"empty", websocket.MessageText, []byte{}, 1024, 0},
		{"type only", websocket.MessageText, nil, 1024, 0},
		{"exactly max", websocket.MessageText, []byte("abcd"), 4, 0},
		{"one over", websocket.MessageText, []byte("abcde"), 4, CodeTooBig},
		{"multibyte", websocket.MessageText, []byte("€ é 🍕"), 1024, 0},
		{"lone continuation", websocket.MessageText, []byte{0x80}, 1024, CodeInvalidText},
		{"overlong", websocket.MessageText, []byte{0xc0, 0xaf}, 1024, CodeInvalidText},
		{"surrogate", websocket.MessageText, []byte{0xed, 0xa0, 0x80}, 1024, CodeInvalidText},
		{"truncated", websocket.MessageText, []byte{0xe2, 0x82}, 1024, CodeInvalidText},
		{"binary", websocket.MessageBinary, []byte("{}"), 1024, CodePolicy},
		{"binary type only", websocket.MessageBinary, nil, 1024, CodePolicy},
		{"binary too big", websocket.MessageBinary, []byte("abcde"), 4, CodePolicy},
		{"too big and invalid", websocket.MessageText, []byte{0xff, 0xff, 0xff}, 2, CodeTooBig},
	} {
		code, reason := checkMessage(tc.typ, tc.data, tc.max)
		if code != tc.want {
			t.Errorf("%s: code %d, want %d", tc.name, code, tc.want)
		}
		if (code == 0) != (reason == "") || len(reason) > 123 {
			t.Errorf("%s: reason %q", tc.name, reason)
		}
	}
}

// FuzzCheckMessage: the frame decision against an oracle written differently (the standard
// library's replacement of invalid sequences changes exactly the invalid texts).
//
//	go test -run '^$' -fuzz FuzzCheckMessage -fuzztime 2m ./internal/hub
func FuzzCheckMessage(f *testing.F) {
	for _, s := range []string{"", "{}", `{"doshii":{"ping":1}}`, "caf\xc3\x28", "\xe2\x82", "\xed\xa0\x80", "\xf4\x90\x80\x80", "é", strings.Repeat("x", 70)} {
		f.Add(true, []byte(s), int64(64))
		f.Add(false, []byte(s), int64(64))
	}
	f.Fuzz(func(t *testing.T, text bool, data []byte, max int64) {
		if max < 0 {
			max = -max
		}
		typ := websocket.MessageBinary
		if text {
			typ = websocket.MessageText
		}
		code, reason := checkMessage(typ, data, max)
		valid := strings.ToValidUTF8(string(data), "\uFFFD") == string(data)
		if valid != utf8.Valid(data) {
			t.Fatalf("oracle disagrees with utf8.Valid on %q", data)
		}
		var want Code
		switch {
		case !text:
			want = CodePolicy
		case int64(len(data)) > max:
			want = CodeTooBig
		case !valid:
			want = CodeInvalidText
		}
		if code != want {
			t.Fatalf("checkMessage(text=%v, %q, max=%d) = %d %q, want %d", text, data, max, code, reason, want)
		}
		if !sendableCode(code) && code != 0 {
			t.Fatalf("code %d cannot be sent", code)
		}
		if len(reason) > 123 || !utf8.ValidString(reason) {
			t.Fatalf("reason %q does not fit a close frame", reason)
		}
	})
}
