// Package chimpy signs a user in to a chimpy (Auth0-style) token service — posgate or the
// vendor's own — and keeps a valid access token for an API.
//
// Config.TokenSource returns an oauth2.TokenSource, so it plugs into everything built on
// golang.org/x/oauth2 (oauth2.NewClient, oauth2.Transport). The source:
//
//   - signs in with the password grant (a JSON body with client_id, audience, username, password,
//     scope) when it holds no token;
//   - renews the access token shortly before it expires, with the refresh token when there is
//     one, and falls back to the password grant when the refresh token is refused;
//   - treats refresh tokens as rotating: each refresh returns a new one and spends the old one.
//     The new token is handed to Config.Persist before it is used or returned, so a client that
//     restarts from what it persisted never presents a spent refresh token (which would end the
//     session: the server revokes the whole family on reuse). When Persist fails, Token returns
//     the error and keeps the new token in memory only; the next call persists it again before
//     serving it;
//   - runs one request at a time however many goroutines ask, and backs off after a failure
//     (package tokensource has the exact rules), so revoked credentials cannot cause a retry storm.
//
// Failures are *oauth2.RetrieveError values (errors.As) with the server's error code
// ("invalid_grant", "invalid_client", "too_many_attempts", …) and description.
package chimpy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/oauth2"

	"github.com/posgate/posgate/client/tokensource"
)

// Config is what a chimpy client needs to know. Only TokenURL and ClientID are required, plus
// Username and Password unless Token holds a refresh token.
type Config struct {
	// TokenURL is the token endpoint, e.g. "https://posgate.example/oauth/token".
	TokenURL string
	// ClientID and ClientSecret identify the app; ClientSecret is empty for a public client.
	ClientID, ClientSecret string
	// Audience is the API the token is for (Auth0's audience parameter).
	Audience string
	// Scopes requested; include "offline_access" to get a refresh token.
	Scopes []string

	// Username and Password sign the user in when there is no usable refresh token. Leave them
	// empty to run on a persisted refresh token alone (the source then fails once it is refused).
	Username, Password string

	// Token is the token to start from, typically FileStore.Load's after a restart.
	Token *oauth2.Token
	// Persist, when set, receives every new token (with its refresh token) before it is used.
	// tokensource.FileStore.Save fits.
	Persist func(ctx context.Context, tok *oauth2.Token) error

	// HTTPClient sends the token requests (the context's oauth2.HTTPClient, else
	// http.DefaultClient, when nil).
	HTTPClient *http.Client
	// Renewal timings and clock; the zero value is fine.
	Options tokensource.Options
}

// Source is the TokenSource of a Config. It is safe for concurrent use.
type Source struct {
	*tokensource.Source
	cfg Config
	ep  tokensource.Endpoint

	mu      sync.Mutex    // guards unsaved
	unsaved *oauth2.Token // fetched, not yet persisted: never served
}

// TokenSource returns a source that keeps a valid token. ctx's values (oauth2.HTTPClient) are
// used by Token; bound each wait with TokenContext.
func (c Config) TokenSource(ctx context.Context) *Source {
	o := c.Options
	if o.Context == nil {
		o.Context = ctx
	}
	s := &Source{cfg: c, ep: tokensource.Endpoint{URL: c.TokenURL, Client: c.HTTPClient, Now: o.Now}}
	s.Source = tokensource.New(s.fetch, c.Token, o)
	return s
}

// Client returns an *http.Client whose requests carry the token and that renews the token once
// and retries once when the API answers 401 (see tokensource.Transport). base is the transport
// underneath (http.DefaultTransport when nil).
func (s *Source) Client(base http.RoundTripper) *http.Client {
	return tokensource.Client(s, base)
}

// ErrNoCredentials is returned when the source holds no refresh token and has no password.
var ErrNoCredentials = errors.New("chimpy: no refresh token and no username/password to sign in with")

func (s *Source) fetch(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
	s.mu.Lock()
	pending := s.unsaved
	s.mu.Unlock()
	if pending != nil {
		return s.persist(ctx, pending)
	}
	if cur != nil && cur.RefreshToken != "" {
		tok, err := s.ep.Post(ctx, s.body("refresh_token", map[string]string{"refresh_token": cur.RefreshToken}))
		if err == nil {
			if tok.RefreshToken == "" { // a server that does not rotate keeps the old one valid
				tok.RefreshToken = cur.RefreshToken
			}
			return s.persist(ctx, tok)
		}
		if tokensource.ErrorCode(err) != "invalid_grant" || s.cfg.Username == "" {
			return nil, fmt.Errorf("chimpy: refresh: %w", err)
		}
		// The refresh token is spent, expired or revoked: sign in again.
	}
	if s.cfg.Username == "" {
		return nil, ErrNoCredentials
	}
	tok, err := s.ep.Post(ctx, s.body("password", map[string]string{"username": s.cfg.Username, "password": s.cfg.Password}))
	if err != nil {
		return nil, fmt.Errorf("chimpy: sign-in of %q: %w", s.cfg.Username, err)
	}
	return s.persist(ctx, tok)
}

// persist hands tok to the hook before anyone may use it; on failure tok is kept aside and the
// next fetch tries again with it (its refresh token is the only one still valid).
func (s *Source) persist(ctx context.Context, tok *oauth2.Token) (*oauth2.Token, error) {
	if s.cfg.Persist != nil {
		if err := s.cfg.Persist(ctx, tok); err != nil {
			s.mu.Lock()
			s.unsaved = tok
			s.mu.Unlock()
			return nil, fmt.Errorf("chimpy: persisting the new token: %w", err)
		}
	}
	s.mu.Lock()
	s.unsaved = nil
	s.mu.Unlock()
	return tok, nil
}

func (s *Source) body(grant string, extra map[string]string) map[string]string {
	b := map[string]string{"grant_type": grant, "client_id": s.cfg.ClientID}
	if s.cfg.ClientSecret != "" {
		b["client_secret"] = s.cfg.ClientSecret
	}
	if s.cfg.Audience != "" && grant == "password" {
		b["audience"] = s.cfg.Audience
	}
	if len(s.cfg.Scopes) > 0 && grant == "password" {
		b["scope"] = strings.Join(s.cfg.Scopes, " ")
	}
	for k, v := range extra {
		b[k] = v
	}
	return b
}

// Expired reports whether err means the user must sign in again: the refresh token or the
// password was refused (invalid_grant), or there was nothing to sign in with.
func Expired(err error) bool {
	return errors.Is(err, ErrNoCredentials) || tokensource.ErrorCode(err) == "invalid_grant"
}

var _ oauth2.TokenSource = (*Source)(nil)
