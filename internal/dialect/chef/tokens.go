package chef

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/jsonrpc"
	"github.com/posgate/posgate/internal/metrics"
	"github.com/posgate/posgate/internal/token"
)

// Audience is the `aud` of every chef device token: it keeps them apart from every other kind of
// posgate token (a chimpy or client_credentials token is refused on chef routes and vice versa).
const Audience = "chef"

// AuthenticatorName is the gateway name of the device-token authenticator.
const AuthenticatorName = "chef.device"

// sidPrefix starts the `sid` of a device token: "chef.<device id>.<generation>". Revoking a device
// revokes its sid, so every token of that pairing stops verifying on every replica at once.
const sidPrefix = "chef."

func sessionID(deviceID string, generation int) string {
	return sidPrefix + deviceID + "." + strconv.Itoa(generation)
}

// parseSessionID splits a device token's sid; ok is false for anything else.
func parseSessionID(sid string) (deviceID string, generation int, ok bool) {
	rest, found := strings.CutPrefix(sid, sidPrefix)
	if !found {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 {
		return "", 0, false
	}
	g, err := strconv.Atoi(rest[i+1:])
	if err != nil || g < 0 {
		return "", 0, false
	}
	return rest[:i], g, true
}

// bearerToken returns the token in Authorization, accepted with or without the "Bearer " scheme
// (the vendor's clients send it bare). "" when there is none.
func bearerToken(r *http.Request) string {
	v := strings.TrimSpace(r.Header.Get("Authorization"))
	if len(v) >= 7 && strings.EqualFold(v[:7], "bearer ") {
		v = strings.TrimSpace(v[7:])
	} else if strings.EqualFold(v, "bearer") {
		v = ""
	}
	return v
}

// tokenFailure maps a verifier error to Chef's number and text. Reasons Chef's table does not name
// are mapped to the nearest documented failure:
//   - too large → 50 (the token cannot be a well-formed Chef token);
//   - wrong iss/aud/typ or a missing claim (a valid posgate token of another kind) → 60, because
//     for Chef the token is not one signed for it, and the client's remedy is the same: pair again;
//   - revoked → 57, so the client knows to pair again rather than retry.
func tokenFailure(raw string, err error) *Failure {
	var ve *token.VerifyError
	if !errors.As(err, &ve) {
		return nil
	}
	switch ve.Reason {
	case token.ReasonMalformed, token.ReasonTooLarge:
		return &Failure{NumIncompleteSegment, msgIncomplete}
	case token.ReasonMissingAlg:
		return &Failure{NumMissingAlg, msgMissingAlg}
	case token.ReasonAlg:
		return &Failure{NumUnsupportedAlg, msgUnsupportedAlg(headerAlg(raw))}
	case token.ReasonJSON:
		return &Failure{NumJSON, msgJSON(safeDetail(ve.Detail))}
	case token.ReasonExpired:
		return &Failure{NumExpired, msgExpired}
	case token.ReasonNotYetValid:
		return &Failure{NumNotNow, msgNotNow}
	case token.ReasonSignature, token.ReasonClaims:
		return &Failure{NumSignature, msgSignature}
	case token.ReasonUnknownKey:
		return &Failure{NumUnknownKey, msgUnknownKey}
	case token.ReasonRevoked:
		return &Failure{NumDeclined, msgDeclined}
	}
	return &Failure{NumSignature, msgSignature}
}

// outcome names a verification result for metrics.
func outcome(f *Failure) string {
	if f == nil {
		return "ok"
	}
	switch f.Num {
	case NumExpired:
		return "expired"
	case NumNotNow:
		return "not_yet_valid"
	case NumDeclined:
		return "revoked"
	case NumSignature:
		return "signature"
	case NumUnknownKey:
		return "unknown_key"
	case NumTokenMissing:
		return "missing"
	}
	return "malformed"
}

// guessLike reports whether a failure looks like someone trying tokens (counted by the throttle),
// as opposed to the normal life of a token (expired, revoked, not yet valid, missing).
func guessLike(f *Failure) bool {
	switch f.Num {
	case NumExpired, NumNotNow, NumDeclined, NumTokenMissing:
		return false
	}
	return true
}

// headerAlg reads the alg of a token's header for the 20 message: printable ASCII, at most 32
// characters; "" when it cannot be read (the verifier already refused the token).
func headerAlg(raw string) string {
	seg, _, ok := strings.Cut(raw, ".")
	if !ok || len(seg) > 1024 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return ""
	}
	var h struct {
		Alg json.RawMessage `json:"alg"`
	}
	if json.Unmarshal(b, &h) != nil || len(h.Alg) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(h.Alg, &s) != nil {
		s = string(h.Alg) // not a string: show the JSON value itself
	}
	return safeDetail(s)
}

// safeDetail keeps a detail printable, short and free of control characters.
func safeDetail(s string) string {
	const max = 120
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// verifyDevice verifies a data call's device token and returns its principal, or the Chef failure.
func (m *Module) verifyDevice(ctx context.Context, raw string) (*auth.Principal, *Failure) {
	if raw == "" {
		metrics.TokenVerifications.WithLabelValues("chef", "missing").Inc()
		return nil, &Failure{NumTokenMissing, msgTokenMissing}
	}
	c, err := m.svc.Verifier.Verify(ctx, raw, token.VerifyOptions{Audience: Audience, Leeway: m.cfg.leeway})
	if err != nil {
		f := tokenFailure(raw, err)
		if f == nil { // not a verdict on the token: the store or the keyring failed
			return nil, nil
		}
		metrics.TokenVerifications.WithLabelValues("chef", outcome(f)).Inc()
		return nil, f
	}
	devID, _, ok := parseSessionID(c.SessionID)
	if !ok || devID != c.Subject {
		metrics.TokenVerifications.WithLabelValues("chef", "signature").Inc()
		return nil, &Failure{NumSignature, msgSignature}
	}
	metrics.TokenVerifications.WithLabelValues("chef", "ok").Inc()
	return principalOf(c), nil
}

// principalOf is who a device token speaks for. Subject and Device are posgate's device id (never
// chosen by the caller); the id the device sent at pairing, if any, is the claim "device_id".
func principalOf(c *token.Claims) *auth.Principal {
	p := &auth.Principal{
		Dialect:   "chef",
		Means:     AuthenticatorName,
		Subject:   c.Subject,
		Device:    c.Subject,
		TokenID:   c.JTI,
		SessionID: c.SessionID,
		ExpiresAt: c.ExpiresAt,
	}
	if v, ok := c.Extra["device_id"].(string); ok && v != "" {
		p.Claims = map[string]any{"device_id": v}
	}
	return p
}

// deviceAuth is the "chef.device" authenticator for gateway routes.
type deviceAuth struct{ m *Module }

// chefError carries a Chef failure through the gateway as an *errs.Error.
func chefError(f *Failure) error {
	return errs.Wrap(errs.Unauthenticated, "chef_"+strconv.Itoa(f.Num), f.Message, f)
}

func (a deviceAuth) Authenticate(r *http.Request) (*auth.Principal, error) {
	raw := bearerToken(r)
	if raw == "" {
		return nil, errs.Wrap(errs.Unauthenticated, "no_credential", msgTokenMissing, auth.ErrNoCredential)
	}
	m := a.m
	addr := auth.Addr(r)
	if err := m.throttleCheck(r.Context(), addr); err != nil {
		return nil, err
	}
	p, f := m.verifyDevice(r.Context(), raw)
	if f != nil {
		m.throttleFail(r.Context(), addr, f)
		return nil, chefError(f)
	}
	if p == nil {
		return nil, errs.New(errs.Unavailable, "unavailable", "token verification is unavailable; retry later")
	}
	return p, nil
}

// WriteError answers in Chef's shape: a JSON-RPC response whose `result` carries the error number
// and text, HTTP 200, with the request's id when the body is a single JSON-RPC call (null
// otherwise). Throttling and unavailability are not Chef business errors: they get a JSON-RPC error
// object with HTTP 429 / 503 and Retry-After.
func (a deviceAuth) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	id := peekID(r)
	var f *Failure
	if errors.As(err, &f) {
		writeResponses(w, http.StatusOK, false, []jsonrpc.Response{{ID: id, Result: failureResult(f)}})
		return
	}
	if auth.IsNoCredential(err) {
		writeResponses(w, http.StatusOK, false, []jsonrpc.Response{{ID: id, Result: failureResult(&Failure{NumTokenMissing, msgTokenMissing})}})
		return
	}
	status, rpcErr := protocolError(err)
	writeResponses(w, status, false, []jsonrpc.Response{jsonrpc.Failure(id, rpcErr)})
}

// peekID reads the id of a single JSON-RPC call from r's body, for error answers on gateway routes
// (the body is not forwarded after an authentication failure, so reading it costs nothing).
func peekID(r *http.Request) json.RawMessage {
	if r.Body == nil || r.Method != http.MethodPost {
		return jsonrpc.Null
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes))
	if err != nil {
		return jsonrpc.Null
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	b, perr := jsonrpc.Parse(data, jsonrpc.Limits{MaxBatch: 1})
	if perr != nil || b.Batch || b.Calls[0].ID == nil {
		return jsonrpc.Null
	}
	return b.Calls[0].ID
}

// protocolError turns a non-business error into a JSON-RPC error object and an HTTP status.
func protocolError(err error) (int, *jsonrpc.Error) {
	e, ok := errs.As(err)
	if !ok {
		return http.StatusInternalServerError, jsonrpc.NewError(jsonrpc.CodeInternalError, nil)
	}
	switch e.Kind {
	case errs.Throttled:
		return http.StatusTooManyRequests, &jsonrpc.Error{Code: codeThrottled, Message: "Too many failed attempts", Data: retryData(e.RetryAfter)}
	case errs.Unavailable:
		status := http.StatusServiceUnavailable
		switch e.Code {
		case "upstream_timeout":
			status = http.StatusGatewayTimeout
		case "upstream_unreachable":
			status = http.StatusBadGateway
		}
		return status, jsonrpc.NewError(jsonrpc.CodeInternalError, e.Message)
	case errs.BadInput:
		return http.StatusOK, jsonrpc.NewError(jsonrpc.CodeInvalidRequest, e.Message)
	case errs.TooLarge, errs.UnsupportedMediaType: // as the chef endpoint answers them (413, 415)
		return errs.HTTPStatus(e.Kind), jsonrpc.NewError(jsonrpc.CodeInvalidRequest, e.Message)
	}
	return http.StatusInternalServerError, jsonrpc.NewError(jsonrpc.CodeInternalError, nil)
}

// codeThrottled is posgate's JSON-RPC server error (the -32000…-32099 range the specification
// reserves for implementations) for a throttled caller.
const codeThrottled = -32029

type retryInfo struct {
	RetryAfter int `json:"retry_after"`
}

func retryData(d time.Duration) retryInfo {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return retryInfo{RetryAfter: s}
}

// HasCredential implements the gateway's CredentialDetector: a bearer token, or a bare token (the
// vendor's clients send it without a scheme). "Basic …" and other schemes are not chef's.
func (a deviceAuth) HasCredential(r *http.Request) bool {
	v := strings.TrimSpace(r.Header.Get("Authorization"))
	if v == "" {
		return false
	}
	if len(v) >= 7 && strings.EqualFold(v[:7], "bearer ") {
		return true
	}
	return !strings.ContainsAny(v, " \t")
}
