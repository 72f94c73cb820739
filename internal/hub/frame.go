package hub

import (
	"unicode/utf8"

	"github.com/coder/websocket"
)

// checkMessage decides whether a received message may reach the dialect's Handler, and if not,
// which close code and reason answer it. data is nil when only the frame type is known yet. The
// order matters: the type is known before a byte is read, the size before the content is judged.
//   - a binary frame where text is expected: 1008;
//   - over max bytes: 1009 (the library stops reading there; this check keeps the rule in one
//     place should the limit ever be raised past it);
//   - text that is not valid UTF-8: 1007 (the websocket library does not check it).
func checkMessage(typ websocket.MessageType, data []byte, max int64) (Code, string) {
	if typ != websocket.MessageText {
		return CodePolicy, "binary frames are not accepted; send text"
	}
	if int64(len(data)) > max {
		return CodeTooBig, "message too big"
	}
	if data != nil && !utf8.Valid(data) {
		return CodeInvalidText, "text is not valid UTF-8"
	}
	return 0, ""
}
