// Package chef is a Go client for a Chef Reporting API (JSON-RPC 2.0) — posgate or the vendor.
//
// A device pairs once: Authentication.authenticateClient is held open by the server until a
// person approves the device (or declines it, or the approval window ends). After that, the same
// call answers at once with a fresh token. Client does this for you:
//
//   - Client.Token (and Client as an oauth2.TokenSource) returns the device token, pairing when
//     there is none. While nobody has decided, the server answers error 56 after its window and
//     the client asks again at once, until its context ends; a decline (57) stops it with
//     ErrDeclined; 58 (too many pending devices) backs off.
//   - The token is renewed before it expires: the renewal call carries the current token in
//     Authorization, so an approved device is answered at once even from a new address. Every
//     new token goes to Config.Persist before it is used (tokensource.FileStore.Save fits), so a
//     restarted device renews instead of pairing again.
//   - Client.Call makes a data call with the token in Authorization, decodes Chef's result
//     envelope, and on 52 (token expired by the server's clock) renews once and calls again.
//
// Business errors are *Error values with Chef's error_num and message; JSON-RPC protocol errors
// are *RPCError values.
package chef

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/posgate/posgate/client/tokensource"
)

// Chef's error numbers the client acts on.
const (
	ErrNumExpired      = 52 // the token expired: renew
	ErrNumMissing      = 55 // no token sent
	ErrNumTimeout      = 56 // nobody approved the device within the window: ask again
	ErrNumDeclined     = 57 // declined or revoked: stop, a person must approve a new pairing
	ErrNumTooMany      = 58 // too many devices pending: back off
	methodAuthenticate = "Authentication.authenticateClient"
)

// ErrDeclined matches (errors.Is) a 57: the device was declined or revoked. Asking again starts
// a new pairing that a person must approve (after the server's cool-down).
var ErrDeclined = errors.New("chef: device authentication was declined (or the device revoked)")

// Error is a Chef business error (inside a JSON-RPC result).
type Error struct {
	Num     int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("chef: error %d: %s", e.Num, e.Message) }

// Is makes a 57 match ErrDeclined.
func (e *Error) Is(target error) bool { return target == ErrDeclined && e.Num == ErrNumDeclined }

// RPCError is a JSON-RPC 2.0 error object (-32700 … -32603, or the server's own).
type RPCError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("chef: JSON-RPC error %d: %s", e.Code, e.Message)
}

// DefaultTimeout bounds one HTTP call when Config.HTTPClient is nil: above the vendor's 60 s
// approval window, so a held pairing call is not cut off.
const DefaultTimeout = 90 * time.Second

// Config describes a device.
type Config struct {
	// Endpoint is the JSON-RPC URL: "https://posgate.example/api/json-rpc/v1", or the vendor's
	// ".../pcu/server/public/index.php/api/json-rpc/v1".
	Endpoint string
	// DeviceID names the device (stable across restarts; not a secret) and DeviceName is the
	// label a person sees when approving it. Without DeviceID the server identifies the device by
	// its address and User-Agent.
	DeviceID, DeviceName string
	// UserAgent is sent on every call; an approval is bound to it.
	UserAgent string
	// HTTPClient sends the calls; its Timeout must exceed the server's approval window. Nil
	// means a client with DefaultTimeout.
	HTTPClient *http.Client
	// Token is the device token to start from (FileStore.Load's after a restart).
	Token *oauth2.Token
	// Persist receives every new token before it is used.
	Persist func(ctx context.Context, tok *oauth2.Token) error
	// Options tune renewal and back-off; Options.Early defaults to a minute before expiry.
	Options tokensource.Options
}

// Client is a paired (or pairing) device. It is safe for concurrent use.
type Client struct {
	cfg Config
	hc  *http.Client
	src *tokensource.Source
	ids atomic.Int64
}

// New returns a client for cfg. ctx's values reach the calls made by Token.
func New(ctx context.Context, cfg Config) *Client {
	c := &Client{cfg: cfg, hc: cfg.HTTPClient}
	if c.hc == nil {
		c.hc = &http.Client{Timeout: DefaultTimeout}
	}
	o := cfg.Options
	if o.Context == nil {
		o.Context = ctx
	}
	c.src = tokensource.New(c.authenticate, cfg.Token, o)
	return c
}

// Token returns a valid device token, pairing or renewing when needed (see the package doc).
func (c *Client) Token() (*oauth2.Token, error) { return c.src.Token() }

// TokenContext is Token bounded by ctx: cancelling it stops waiting for an approval.
func (c *Client) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	return c.src.TokenContext(ctx)
}

var _ oauth2.TokenSource = (*Client)(nil)

// authenticate is the fetch of the token source: authenticateClient until a token or a final
// answer. A 56 is asked again (the server held the call for its whole window, so this is not a
// storm), at most once a second in case a server answers 56 at once.
func (c *Client) authenticate(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
	params := map[string]string{}
	if c.cfg.DeviceID != "" {
		params["device_id"] = c.cfg.DeviceID
	}
	if c.cfg.DeviceName != "" {
		params["device_name"] = c.cfg.DeviceName
	}
	var auth string
	if cur != nil {
		auth = cur.AccessToken // renewal: the server answers at once for an approved device
	}
	for {
		started := time.Now()
		var data struct {
			Token     string `json:"token"`
			NewDevice bool   `json:"new_device"`
		}
		err := c.call(ctx, auth, methodAuthenticate, []any{params}, &data)
		var ce *Error
		switch {
		case err == nil:
			if data.Token == "" {
				return nil, errors.New("chef: authenticateClient answered without a token")
			}
			tok := &oauth2.Token{AccessToken: data.Token, TokenType: "Bearer", Expiry: expiry(data.Token)}
			tok = tok.WithExtra(map[string]any{"new_device": data.NewDevice})
			if c.cfg.Persist != nil {
				if err := c.cfg.Persist(ctx, tok); err != nil {
					return nil, fmt.Errorf("chef: persisting the device token: %w", err)
				}
			}
			return tok, nil
		case errors.As(err, &ce) && ce.Num == ErrNumTimeout:
			if wait := time.Second - time.Since(started); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			continue // nobody decided yet: keep the request alive
		case errors.As(err, &ce) && cur != nil && ce.Num != ErrNumDeclined && ce.Num != ErrNumTooMany && auth != "":
			auth = "" // the old token no longer renews (too old): pair like a new device
			continue
		default:
			return nil, err
		}
	}
}

// expiry reads exp from a JWT's claims without verifying it (the client cannot, and needs it only
// to renew in time); zero when absent.
func expiry(jwt string) time.Time {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}
	}
	var cl struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(raw, &cl) != nil {
		return time.Time{}
	}
	secs, err := cl.Exp.Float64()
	if err != nil || secs <= 0 {
		return time.Time{}
	}
	return time.Unix(int64(secs), 0)
}

// Call makes the data call method(params) with the device token and decodes the result's data
// into result (when not nil). On 52 (expired) it renews the token and calls once more; on 57 the
// device must pair again (ErrDeclined).
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	tok, err := c.src.TokenContext(ctx)
	if err != nil {
		return err
	}
	err = c.call(ctx, tok.AccessToken, method, params, result)
	var ce *Error
	if errors.As(err, &ce) && (ce.Num == ErrNumExpired || ce.Num == ErrNumDeclined) {
		c.src.Invalidate(tok)
		if ce.Num == ErrNumDeclined {
			return err
		}
		if tok, err = c.src.TokenContext(ctx); err != nil {
			return err
		}
		err = c.call(ctx, tok.AccessToken, method, params, result)
	}
	return err
}

// maxAnswer caps a JSON-RPC answer read into memory.
const maxAnswer = 16 << 20

func (c *Client) call(ctx context.Context, auth, method string, params, result any) error {
	msg := map[string]any{"jsonrpc": "2.0", "method": method, "id": c.ids.Add(1)}
	if params != nil { // JSON-RPC 2.0: params is an array or an object, or absent (never null)
		msg["params"] = params
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.Endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.cfg.UserAgent != "" {
		req.Header.Set("User-Agent", c.cfg.UserAgent)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth) // as the vendor documents: the token alone
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &httpError{status: resp.StatusCode, retry: tokensource.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  *RPCError       `json:"error"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return fmt.Errorf("chef: %s: the answer is not JSON-RPC: %w", method, err)
	}
	if env.Error != nil {
		return env.Error
	}
	var res struct {
		Success  *bool           `json:"success"`
		Data     json.RawMessage `json:"data"`
		ErrorNum int             `json:"error_num"`
		ErrorMsg string          `json:"error_message"`
	}
	if err := json.Unmarshal(env.Result, &res); err != nil || res.Success == nil {
		return fmt.Errorf("chef: %s: the result is not a Chef result", method)
	}
	if !*res.Success {
		return &Error{Num: res.ErrorNum, Message: res.ErrorMsg}
	}
	if result != nil && len(res.Data) > 0 {
		if err := json.Unmarshal(res.Data, result); err != nil {
			return fmt.Errorf("chef: %s: decoding data: %w", method, err)
		}
	}
	return nil
}

// httpError is an answer other than 200 (Chef answers everything with 200; posgate answers 503
// with Retry-After while shutting down, 429 when throttled).
type httpError struct {
	status int
	retry  time.Duration
}

func (e *httpError) Error() string {
	return fmt.Sprintf("chef: HTTP %d %s", e.status, http.StatusText(e.status))
}

// RetryAfter is the wait the server asked for; the token source honours it.
func (e *httpError) RetryAfter() time.Duration { return e.retry }
