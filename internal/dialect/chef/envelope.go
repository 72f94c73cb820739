package chef

import (
	"encoding/json"
	"fmt"
)

// Chef's business error numbers, as the vendor documents them. The texts are the vendor's, character for
// character; a bracketed placeholder in the vendor's table ("[alg]", "[detail]") is replaced by
// the value it names.
const (
	NumUnsupportedAlg    = 20
	NumMissingAlg        = 22
	NumJSON              = 40
	NumIncompleteSegment = 50
	NumExpired           = 52
	NumNotNow            = 54
	NumTokenMissing      = 55
	NumTimeout           = 56
	NumDeclined          = 57
	NumTooManyPending    = 58
	NumSignature         = 60
	NumUnknownKey        = 70
)

// Fixed texts.
const (
	msgMissingAlg     = "Invalid token: Missing header algorithm"
	msgIncomplete     = "Invalid token: Incomplete segments"
	msgExpired        = "Invalid token: Expired"
	msgNotNow         = "Invalid token: Not Now"
	msgTokenMissing   = "Token is missing"
	msgDeclined       = "Device authentication process is declined by user."
	msgTooManyPending = "Too many pending device requests"
	msgSignature      = "Invalid Token: Signature Failed"
	msgUnknownKey     = "Invalid Token: Unknown key ID"
)

func msgUnsupportedAlg(alg string) string { return "Unsupported algorithm " + alg }
func msgJSON(detail string) string        { return "JSON failed: " + detail }

// msgTimeout is the vendor's text with the configured window (60 s by default, which gives the
// vendor's exact sentence).
func msgTimeout(seconds int) string {
	return fmt.Sprintf("Connection request was not confirmed on Chef device within %d seconds.", seconds)
}

// Failure is a Chef business error: answered inside `result` with HTTP 200.
type Failure struct {
	Num     int
	Message string
}

func (f *Failure) Error() string { return fmt.Sprintf("chef: error %d: %s", f.Num, f.Message) }

// envelope is Chef's `result` object. Field order is the vendor's.
type envelope struct {
	Success         bool   `json:"success"`
	Data            any    `json:"data"`
	ErrorNum        int    `json:"error_num"`
	ErrorMessage    string `json:"error_message"`
	UndoID          any    `json:"undo_id"`
	UndoType        any    `json:"undo_type"`
	UndoMessage     any    `json:"undo_message"`
	ErrorForEndUser any    `json:"errorForEndUser"`
}

// tokenData is `data` of a successful authenticateClient.
type tokenData struct {
	Token     string `json:"token"`
	NewDevice bool   `json:"new_device"`
}

// successResult is the `result` of a successful authenticateClient.
func successResult(tok string, newDevice bool) json.RawMessage {
	b, _ := json.Marshal(envelope{Success: true, Data: tokenData{Token: tok, NewDevice: newDevice}})
	return b
}

// failureResult is the `result` of a business error: success false, data "" (an empty string, as
// the vendor sends it).
func failureResult(f *Failure) json.RawMessage {
	b, _ := json.Marshal(envelope{Data: "", ErrorNum: f.Num, ErrorMessage: f.Message})
	return b
}
