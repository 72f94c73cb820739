// Package jackpot talks to the Jackpot API v2 — posgate or the vendor — with each of its three
// authentication means:
//
//   - the API key alone, for low-risk reads: APIKeyTransport adds the `apikey` header;
//   - machine-to-machine: Config.M2M is an oauth2.TokenSource for the client_credentials grant at
//     /v2/token, cached and renewed early;
//   - client sessions: Config.NewSession signs a jwt-bearer assertion (HS256 with the API
//     signature; claims amount, iat and a notificationKey unique to the call) and exchanges it at
//     /v2/token for a session token.
//
// A session token is spent by one voucher reservation (the server revokes it once a reservation
// succeeds), and an assertion or notificationKey works only once. So a Session is not a
// TokenSource that would hide a renewal: make one Session per reservation (per transaction), use
// it for that transaction's calls, and reserve with Session.Reserve, which refuses a second
// reservation on the same session without sending it.
//
// /v2/token takes JSON, which golang.org/x/oauth2 cannot send; the answers and errors are x/oauth2's
// types all the same (*oauth2.Token, *oauth2.RetrieveError).
package jackpot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/posgate/posgate/client/tokensource"
)

// GrantJWTBearer is the grant type of a session request.
const GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// Config is a jackpot account as a client knows it.
type Config struct {
	// BaseURL is the API's root, e.g. "https://posgate.example"; the token endpoint is
	// BaseURL + "/v2/token".
	BaseURL string
	// APIKey is the account's API key (also its client_id).
	APIKey string
	// ClientSecret is needed for M2M only.
	ClientSecret string
	// APISignature is the secret that signs session assertions (not the API key). After a
	// rotation, set the new one: the server accepts both during its overlap window.
	APISignature []byte
	// HTTPClient sends the token requests and, through Session, the API calls
	// (http.DefaultClient when nil).
	HTTPClient *http.Client
	// Options tune the M2M source; Options.Now is also the clock that stamps assertions.
	Options tokensource.Options
	// Skew, when set, corrects the clock that stamps assertions: a session request refused
	// with invalid_grant while the server's Date header disagrees with the local clock is signed
	// again with the server's time and sent once more (an assertion that failed a check is not
	// burnt, so its notificationKey still works). Share one Skew between Configs of one server.
	Skew *tokensource.Skew
}

func (c *Config) now() time.Time {
	if c.Options.Now != nil {
		return c.Options.Now()
	}
	return time.Now()
}

// assertionTime is the iat of a new assertion: the local clock corrected by what the server's
// refusals taught (Skew).
func (c *Config) assertionTime() time.Time {
	if c.Skew != nil {
		return c.Skew.Now(c.now())
	}
	return c.now()
}

func (c *Config) client() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return http.DefaultClient
}

func (c *Config) endpoint() tokensource.Endpoint {
	return tokensource.Endpoint{URL: strings.TrimSuffix(c.BaseURL, "/") + "/v2/token", Client: c.HTTPClient, Now: c.Options.Now}
}

// APIKeyTransport sends every request with the `apikey` header, for routes that take the API key
// alone.
type APIKeyTransport struct {
	Key  string
	Base http.RoundTripper // http.DefaultTransport when nil
}

// RoundTrip implements http.RoundTripper.
func (t *APIKeyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	r := req.Clone(req.Context())
	r.Header.Set("apikey", t.Key)
	return base.RoundTrip(r)
}

// M2M returns a source of machine-to-machine tokens (client_credentials), cached and renewed
// before they expire; it is safe for concurrent use. Plug it into tokensource.Client or
// oauth2.NewClient.
func (c Config) M2M(ctx context.Context) *tokensource.Source {
	o := c.Options
	if o.Context == nil {
		o.Context = ctx
	}
	ep := c.endpoint()
	body := map[string]string{"grant_type": "client_credentials", "client_id": c.APIKey, "client_secret": c.ClientSecret}
	return tokensource.New(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
		tok, err := ep.Post(ctx, body)
		if err != nil {
			return nil, fmt.Errorf("jackpot: m2m token: %w", err)
		}
		return tok, nil
	}, nil, o)
}

// SessionRequest is what a session may do.
type SessionRequest struct {
	// Amount is the most the session may spend (required, > 0).
	Amount float64
	// NotificationKey is the caller's unique transaction key; empty means a random one. The
	// server refuses a key it has seen for this account (for the assertion's lifetime).
	NotificationKey string
	// UserID and ForceManualConfirm are passed on when set.
	UserID             string
	ForceManualConfirm *bool
}

// Assertion signs the jwt-bearer assertion for r, issued now, and returns it with the
// notificationKey it carries (r's, or a new random one).
func (c *Config) Assertion(r SessionRequest) (assertion, notificationKey string, err error) {
	if len(c.APISignature) == 0 {
		return "", "", errors.New("jackpot: no API signature to sign the assertion with")
	}
	if !(r.Amount > 0) {
		return "", "", fmt.Errorf("jackpot: session amount %v: must be positive", r.Amount)
	}
	key := r.NotificationKey
	if key == "" {
		key = NewNotificationKey()
	} else if len(key) > 128 {
		return "", "", errors.New("jackpot: notificationKey longer than 128 characters")
	}
	claims := jwt.MapClaims{"amount": r.Amount, "iat": c.assertionTime().Unix(), "notificationKey": key}
	if r.UserID != "" {
		claims["userId"] = r.UserID
	}
	if r.ForceManualConfirm != nil {
		claims["forceManualConfirm"] = *r.ForceManualConfirm
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(c.APISignature)
	if err != nil {
		return "", "", fmt.Errorf("jackpot: signing the assertion: %w", err)
	}
	return s, key, nil
}

// NewNotificationKey returns a random transaction key (128 bits, hex).
func NewNotificationKey() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewSession signs an assertion for r and exchanges it for a session token. Each call is a new
// session with its own notificationKey; nothing is cached or reused.
func (c Config) NewSession(ctx context.Context, r SessionRequest) (*Session, error) {
	a, key, err := c.Assertion(r)
	if err != nil {
		return nil, err
	}
	sent := c.now()
	tok, err := c.endpoint().Post(ctx, map[string]string{"grant_type": GrantJWTBearer, "client_id": c.APIKey, "assertion": a})
	var re *oauth2.RetrieveError
	if err != nil && c.Skew != nil && errors.As(err, &re) && re.ErrorCode == "invalid_grant" && c.Skew.Learn(re.Response, sent) {
		r.NotificationKey = key
		if a, _, err = c.Assertion(r); err != nil {
			return nil, err
		}
		tok, err = c.endpoint().Post(ctx, map[string]string{"grant_type": GrantJWTBearer, "client_id": c.APIKey, "assertion": a})
	}
	if err != nil {
		return nil, fmt.Errorf("jackpot: session for notificationKey %q: %w", key, err)
	}
	return &Session{Token: tok, NotificationKey: key, Amount: r.Amount, client: c.client(), now: c.now}, nil
}

// ErrSessionSpent is returned by Session.Reserve when the session already made a reservation,
// or is making one: a session token pays for one reservation.
var ErrSessionSpent = errors.New("jackpot: this session was already used for a reservation; start a new session")

// ErrSessionExpired is returned when the session token has expired; start a new session.
var ErrSessionExpired = errors.New("jackpot: the session token has expired; start a new session")

// Session is one client session: a token good for one reservation of at most Amount.
type Session struct {
	Token           *oauth2.Token
	NotificationKey string
	Amount          float64

	client *http.Client
	now    func() time.Time

	mu    sync.Mutex
	state int // 0 open, 1 reserving, 2 spent
}

// Do sends req with the session token, for session routes that do not reserve.
func (s *Session) Do(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	spent := s.state == 2
	s.mu.Unlock()
	if spent {
		closeBody(req)
		return nil, ErrSessionSpent
	}
	return s.send(req)
}

// Reserve sends the reservation req with the session token. It refuses, without sending, a
// second reservation (ErrSessionSpent): the first 2xx answer spends the session. A non-2xx answer
// leaves it open, so a refused reservation can be corrected and sent again.
func (s *Session) Reserve(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	if s.state != 0 {
		s.mu.Unlock()
		closeBody(req)
		return nil, ErrSessionSpent
	}
	s.state = 1
	s.mu.Unlock()
	resp, err := s.send(req)
	s.mu.Lock()
	if err == nil && resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		s.state = 2
	} else {
		s.state = 0
	}
	s.mu.Unlock()
	return resp, err
}

// Spent reports whether the session has made its reservation.
func (s *Session) Spent() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == 2
}

func (s *Session) send(req *http.Request) (*http.Response, error) {
	if !s.Token.Expiry.IsZero() && !s.now().Before(s.Token.Expiry) {
		closeBody(req)
		return nil, ErrSessionExpired
	}
	r := req.Clone(req.Context())
	s.Token.SetAuthHeader(r)
	return s.client.Do(r)
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
