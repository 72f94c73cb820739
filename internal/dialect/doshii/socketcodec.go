package doshii

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/jsonx"
)

// Close codes of the doshii sockets (the hub's set; 4xxx are application codes).
const (
	CloseNormal       = 1000
	CloseGoingAway    = 1001
	CloseNotUTF8      = 1007
	ClosePolicy       = 1008
	CloseTooBig       = 1009
	CloseServerError  = 1011
	CloseRevoked      = 4001
	CloseDisabled     = 4003
	CloseReplaced     = 4009
	maxInboundFrame   = 4 << 10 // a heartbeat is about 60 bytes; anything near this is not one
	maxPingLiteral    = 32      // a unix time in ms is 13 digits; room for a float or an exponent
	maxVersionLiteral = 64
)

// FrameError is an inbound frame the socket refuses: the connection is closed with Code and
// Reason (a short fixed text, never an echo of the frame).
type FrameError struct {
	Code   int
	Reason string
}

func (e *FrameError) Error() string { return "doshii socket: " + e.Reason }

var (
	errFrameTooBig  = &FrameError{CloseTooBig, "message too big"}
	errFrameUTF8    = &FrameError{CloseNotUTF8, "text is not valid UTF-8"}
	errFrameJSON    = &FrameError{ClosePolicy, "message is not a JSON object"}
	errFrameShape   = &FrameError{ClosePolicy, `expected a heartbeat {"doshii":{"ping":…,"version":…}}`}
	errFramePing    = &FrameError{ClosePolicy, "heartbeat ping must be a number"}
	errFrameVersion = &FrameError{ClosePolicy, "heartbeat version must be a short string"}
)

// Heartbeat is the POS's only message: {"doshii":{"ping":<unix ms>,"version":"<pos version>"}}.
type Heartbeat struct {
	// Ping is the number exactly as the POS wrote it, so the pong carries the same value (an
	// integer stays an integer, 1.7e12 stays 1.7e12).
	Ping    string
	Version string
}

// DecodeHeartbeat parses one inbound text frame. The frame must be valid UTF-8, at most 4 KiB,
// one JSON object without repeated members whose only member is "doshii", an object with a
// numeric "ping" and an optional string "version"; other members of "doshii" are ignored (a POS
// may add its own). Member names are matched exactly.
func DecodeHeartbeat(b []byte) (Heartbeat, error) {
	if len(b) > maxInboundFrame {
		return Heartbeat{}, errFrameTooBig
	}
	if !utf8.Valid(b) {
		return Heartbeat{}, errFrameUTF8
	}
	if jsonx.CheckObject(b) != nil {
		return Heartbeat{}, errFrameJSON
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(b, &top) != nil {
		return Heartbeat{}, errFrameJSON
	}
	inner, ok := top["doshii"]
	if !ok || len(top) != 1 {
		return Heartbeat{}, errFrameShape
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(inner, &fields) != nil || fields == nil {
		return Heartbeat{}, errFrameShape
	}
	ping, ok := fields["ping"]
	if !ok {
		return Heartbeat{}, errFramePing
	}
	ping = bytes.TrimSpace(ping)
	if len(ping) == 0 || len(ping) > maxPingLiteral || !(ping[0] == '-' || ('0' <= ping[0] && ping[0] <= '9')) {
		return Heartbeat{}, errFramePing // a string, null, bool, object or array (or a huge literal)
	}
	hb := Heartbeat{Ping: string(ping)}
	if v, ok := fields["version"]; ok && string(bytes.TrimSpace(v)) != "null" {
		if json.Unmarshal(v, &hb.Version) != nil || len(hb.Version) > maxVersionLiteral {
			return Heartbeat{}, errFrameVersion
		}
	}
	return hb, nil
}

// AppendPong appends the answer to hb:
// {"type":"message","data":{"doshii":{"pong":<same value>,"version":"<api version>"}}}.
func AppendPong(dst []byte, hb Heartbeat) []byte {
	dst = append(dst, `{"type":"message","data":{"doshii":{"pong":`...)
	dst = append(dst, hb.Ping...) // a validated JSON number literal
	dst = append(dst, `,"version":`...)
	dst = jsonx.AppendString(dst, APIVersion)
	return append(dst, "}}}"...)
}

// AppendHealthCheck appends the server's probe {"type":"health_check","data":{"ping":<unix ms>}};
// the POS answers it with a heartbeat.
func AppendHealthCheck(dst []byte, unixMS int64) []byte {
	dst = append(dst, `{"type":"health_check","data":{"ping":`...)
	dst = strconv.AppendInt(dst, unixMS, 10)
	return append(dst, "}}"...)
}

// AppendEvent appends an event frame {"type":"<event>","data":{…},"id":"<event id>",
// "locationId":"<location id>"}: the spec's {"type","data"} plus the event id (a redelivered
// event keeps it, so the POS can drop a duplicate) and the location it is for (a cloud POS
// receives every location of its vendor on one socket). data must be a JSON object already
// validated and compacted.
func AppendEvent(dst []byte, id, location, typ string, data []byte) []byte {
	dst = append(dst, `{"type":`...)
	dst = jsonx.AppendString(dst, typ)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	dst = append(dst, `,"id":`...)
	dst = jsonx.AppendString(dst, id)
	dst = append(dst, `,"locationId":`...)
	dst = jsonx.AppendString(dst, location)
	return append(dst, '}')
}
