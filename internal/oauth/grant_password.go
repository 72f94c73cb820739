package oauth

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// passwordGrant is the resource owner password credentials grant (RFC 6749 §4.3) as chimpy uses it:
// a user's username and password for an access token for one audience, and a refresh token when
// the scope holds offline_access and the client may use the refresh_token grant.
//
// A wrong username and a wrong password take the same time (an unknown user costs a dummy argon2id
// check) and get the same answer. Failures are throttled per address and per (user, address), with
// an identity-wide limit at a much higher threshold, and audited. Checks in progress are bounded
// per address and per user (429), and the wait for an argon2id slot is bounded (503), so a burst
// of guesses cannot queue up in front of everyone else's sign-in (see inflight.go).
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
	aud, err := userAudience(gr, s.svc.Reserved)
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
	// The throttle counts a guess only once it has been checked, so it cannot stop a burst of
	// concurrent guesses; the bound on checks in progress does, before anything is queued.
	release, ok := s.checks.acquire(limitKey{"a|" + auth.AddrKey(gr.Addr), maxChecksPerAddress},
		limitKey{"u|" + ident, maxChecksPerUser})
	if !ok {
		return nil, errChecksInProgress
	}
	defer release()
	// From here on the attempt runs to its end even if the caller hangs up: a guess that is
	// checked is always counted and audited (a cancelled lookup would otherwise race the count).
	reqCtx := ctx
	ctx, cancel := detach(ctx)
	defer cancel()
	u, err := s.svc.Store.GetUserByUsername(ctx, gr.Username)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, storeFailure(err)
	}
	// Only the wait for an argon2id slot is not detached: it is bounded, and it ends when the
	// caller hangs up, because a guess that was never checked tells its sender nothing and so
	// need not be counted. A check that has started always finishes.
	waitCtx, cancelWait := context.WithTimeout(reqCtx, time.Duration(slotWait.Load()))
	defer cancelWait()
	var reason string
	if u == nil {
		err = secret.DummyCheckContext(waitCtx)
		reason = "unknown username"
	} else {
		var match bool
		match, err = secret.CheckPasswordContext(waitCtx, u.PasswordHash, gr.Password)
		switch {
		case !match:
			reason = "wrong password"
		case u.Disabled:
			reason = "user disabled"
		}
	}
	if err != nil {
		// No argon2id slot came free in time (or the caller left while waiting): nothing was
		// checked, so nothing is counted or audited; the answer says to come back.
		return nil, errPasswordBusy
	}
	if reason != "" {
		target := "user:unknown(" + ident + ")"
		if u != nil {
			target = "user:" + u.ID
		}
		s.fail(ctx, ThrottleLogin, gr.Addr, ident, store.AuditEvent{At: gr.Now, Actor: "client:" + gr.Client.ID, Action: "login.failed",
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
func userAudience(gr *GrantRequest, reserved app.Audiences) (string, error) {
	if gr.Audience == "" {
		if len(gr.Client.Audiences) == 1 {
			if aud := gr.Client.Audiences[0]; reserved.Has(aud) { // a client made before the admin API refused it
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
