package oauth

import (
	"context"
	"errors"
	"slices"

	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// passwordGrant is the resource owner password credentials grant (RFC 6749 §4.3) as chimpy uses it:
// a user's username and password for an access token for one audience, and a refresh token when
// the scope holds offline_access and the client may use the refresh_token grant.
//
// A wrong username and a wrong password take the same time (an unknown user costs a dummy argon2id
// check) and get the same answer. Failures are throttled per address and per (user, address), with
// an identity-wide limit at a much higher threshold, and audited.
type passwordGrant struct{ s *Server }

func (passwordGrant) Type() string { return GrantPassword }

// msgWrongCredentials is the one answer to every failed login, whatever failed.
const msgWrongCredentials = "Wrong username or password."

func (g passwordGrant) Handle(ctx context.Context, gr *GrantRequest) (*TokenResponse, error) {
	s := g.s
	if gr.Username == "" || gr.Password == "" {
		return nil, invalidRequest("username and password are required")
	}
	// Everything that needs no password check comes first: a malformed request costs no argon2id
	// and no throttle count.
	aud, err := userAudience(gr)
	if err != nil {
		return nil, err
	}
	requested, err := parseScope(gr.Scope)
	if err != nil {
		return nil, err
	}
	offlineOK := slices.Contains(gr.Client.GrantTypes, GrantRefreshToken)
	scope, err := grantScope(requested, gr.Client.Scopes, offlineOK)
	if err != nil {
		return nil, err
	}

	ident := identity("user", gr.Username)
	if s.svc.Throttle != nil {
		if err := s.svc.Throttle.Check(ctx, ThrottleLogin, gr.Addr, ident); err != nil {
			return nil, err
		}
	}
	// From here on the attempt runs to its end even if the caller hangs up: a guess that is
	// checked is always counted and audited (a cancelled lookup would otherwise race the count).
	ctx, cancel := detach(ctx)
	defer cancel()
	u, err := s.svc.Store.GetUserByUsername(ctx, gr.Username)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, storeFailure(err)
	}
	var reason string
	switch {
	case u == nil:
		secret.DummyCheck()
		reason = "unknown username"
	case !secret.CheckPassword(u.PasswordHash, gr.Password):
		reason = "wrong password"
	case u.Disabled:
		reason = "user disabled"
	}
	if reason != "" {
		s.fail(ctx, ThrottleLogin, gr.Addr, ident)
		target := "user:unknown(" + ident + ")"
		if u != nil {
			target = "user:" + u.ID
		}
		s.audit(ctx, store.AuditEvent{At: gr.Now, Actor: "client:" + gr.Client.ID, Action: "login.failed",
			Target: target, Address: gr.Addr, Outcome: "denied", Detail: reason})
		return nil, Fail(CodeInvalidGrant, msgWrongCredentials)
	}

	resp := &TokenResponse{Scope: joinScope(scope)}
	sid := ""
	if slices.Contains(scope, ScopeOfflineAccess) {
		rt, fam, err := s.newFamily(ctx, gr.Client, u.ID, aud, scope, gr.Now)
		if err != nil {
			return nil, err
		}
		resp.RefreshToken, sid = rt, fam.ID
	}
	resp.AccessToken, resp.ExpiresIn, err = s.mint(ctx, gr, u.ID, aud, scope, GrantPassword, sid, true)
	if err != nil {
		return nil, err
	}
	s.audit(ctx, store.AuditEvent{At: gr.Now, Actor: "user:" + u.ID, Action: "login.ok", Target: "client:" + gr.Client.ID,
		Address: gr.Addr, Outcome: "ok", Detail: "audience " + aud})
	return resp, nil
}

// userAudience is the audience of a user token: the requested one, which the client must list, or,
// when none is requested and the client lists exactly one, that one (RFC 6749 clients such as
// golang.org/x/oauth2's password grant cannot send an audience).
func userAudience(gr *GrantRequest) (string, error) {
	if gr.Audience == "" {
		if len(gr.Client.Audiences) == 1 {
			if aud := gr.Client.Audiences[0]; IsReservedAudience(aud) { // a client made before the admin API refused it
				return "", errReservedAudience(aud)
			}
			return gr.Client.Audiences[0], nil
		}
		return "", invalidRequest("audience is required")
	}
	if !slices.Contains(gr.Client.Audiences, gr.Audience) {
		return "", Fail(CodeAccessDenied, "the client may not request this audience")
	}
	return gr.Audience, nil
}
