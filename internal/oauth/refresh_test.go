package oauth_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store/pgtest"
)

// session is a signed-in user with a refresh token.
type session struct {
	e    *env
	c    client
	uid  string
	at   string
	rt   string
	sid  string
	user string
}

func lifetimes(idle, absolute, grace int) func(*config.Config) {
	return func(c *config.Config) {
		c.Chimpy.AccessLifetime = 60
		c.Chimpy.RefreshIdle = idle
		c.Chimpy.RefreshAbsolute = absolute
		c.Chimpy.RefreshGrace = grace
	}
}

func signIn(t *testing.T, e *env) *session {
	t.Helper()
	c := e.createClient(t, []string{"password", "refresh_token"}, []string{"rentals", "offline_access"}, []string{apiAudience})
	uid := e.createUser(t, "ann", "correct horse battery")
	a := e.login(t, &c, "ann", "correct horse battery", "offline_access rentals")
	if a.str("refresh_token") == "" {
		t.Fatalf("no refresh token: %s", a.Raw)
	}
	return &session{e: e, c: c, uid: uid, at: a.str("access_token"), rt: a.str("refresh_token"), sid: str(claims(t, a.str("access_token"))["sid"]), user: "ann"}
}

// rotate refreshes and expects success; it returns the new access and refresh tokens.
func (s *session) rotate(t *testing.T) (string, string) {
	t.Helper()
	a := s.e.refresh(t, &s.c, s.rt)
	if a.Status != http.StatusOK {
		t.Fatalf("refresh: %d %s", a.Status, a.Raw)
	}
	if a.Header.Get("Cache-Control") != "no-store" || a.str("token_type") != "Bearer" || a.JSON["expires_in"] != float64(60) {
		t.Fatalf("refresh answer %v %s", a.Header, a.Raw)
	}
	at, rt := a.str("access_token"), a.str("refresh_token")
	if rt == s.rt || rt == "" {
		t.Fatal("refresh did not rotate")
	}
	if got := str(claims(t, at)["sid"]); got != s.sid {
		t.Fatalf("sid changed: %q → %q", s.sid, got)
	}
	s.at, s.rt = at, rt
	return at, rt
}

func wantInvalidGrant(t *testing.T, a answer) {
	t.Helper()
	checkError(t, a, http.StatusForbidden, "invalid_grant", false)
}

// TestRefreshReuse: a rotated refresh token presented again revokes the family — its current
// refresh token and every access token minted from it — is audited, and answers 403 invalid_grant.
func TestRefreshReuse(t *testing.T) {
	t.Parallel()
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, envOptions{driver: driver, configure: lifetimes(3600, 86400, 0)})
		s := signIn(t, e)
		first, firstAT := s.rt, s.at
		at2, rt2 := s.rotate(t)
		if !e.active(t, &s.c, at2) || !e.active(t, &s.c, rt2) || e.active(t, &s.c, first) {
			t.Fatal("before reuse: the successor must be active and the rotated token not")
		}
		wantInvalidGrant(t, e.refresh(t, &s.c, first))
		wantInvalidGrant(t, e.refresh(t, &s.c, rt2))
		for _, tok := range []string{firstAT, at2, rt2} {
			if e.active(t, &s.c, tok) {
				t.Fatal("a token of the revoked family is still active")
			}
		}
		p, ok := e.inst.Svc.Auth.Get("chimpy")
		if !ok {
			t.Fatal("no chimpy authenticator")
		}
		req, _ := http.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", "Bearer "+at2)
		if _, aerr := p.Authenticate(req); aerr == nil {
			t.Fatal("the chimpy authenticator accepts an access token of a revoked family")
		}
		if ev := e.audit(t, "token.refresh_reuse"); len(ev) != 1 {
			t.Fatalf("audit: %+v", ev)
		}
		fam, ferr := e.inst.Svc.Store.GetRefreshFamily(t.Context(), s.sid)
		if ferr != nil || fam.RevokedAt == nil {
			t.Fatalf("family in the store: %+v %v", fam, ferr)
		}
		// A new sign-in is a new family and works.
		a := e.login(t, &s.c, "ann", "correct horse battery", "offline_access")
		if str(claims(t, a.str("access_token"))["sid"]) == s.sid {
			t.Fatal("a new sign-in reused the revoked family")
		}
	})
}

// TestRefreshGrace: within the grace period, the rotated token gets the same successor again (a
// client retrying after a lost answer); after it, or once the successor was used, it is reuse.
func TestRefreshGrace(t *testing.T) {
	t.Parallel()
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, envOptions{driver: driver, configure: lifetimes(3600, 86400, 10)})
		s := signIn(t, e)
		first := s.rt
		_, rt2 := s.rotate(t)
		e.advance(9 * time.Second)
		again := e.refresh(t, &s.c, first)
		if again.Status != http.StatusOK || again.str("refresh_token") != rt2 {
			t.Fatalf("retry within grace: %d %s (want the same successor)", again.Status, again.Raw)
		}
		if again.str("access_token") == "" || str(claims(t, again.str("access_token"))["sid"]) != s.sid {
			t.Fatalf("retry within grace: %s", again.Raw)
		}
		// The successor is still the live token of the family.
		_, rt3 := s.rotate(t)
		// The first token again, still inside its grace but its successor was used: reuse.
		wantInvalidGrant(t, e.refresh(t, &s.c, first))
		wantInvalidGrant(t, e.refresh(t, &s.c, rt3))

		// Past the grace period a retry is reuse.
		s2 := signIn2(t, e, &s.c)
		old := s2.rt
		s2.rotate(t)
		e.advance(11 * time.Second)
		wantInvalidGrant(t, e.refresh(t, &s.c, old))
		wantInvalidGrant(t, e.refresh(t, &s.c, s2.rt))
	})
}

// signIn2 signs ann in again with client c (a second family).
func signIn2(t *testing.T, e *env, c *client) *session {
	t.Helper()
	a := e.login(t, c, "ann", "correct horse battery", "offline_access rentals")
	return &session{e: e, c: *c, at: a.str("access_token"), rt: a.str("refresh_token"), sid: str(claims(t, a.str("access_token"))["sid"])}
}

// TestRefreshIdleAndAbsoluteExpiry: each use renews the idle lifetime; the absolute lifetime is
// never renewed.
func TestRefreshIdleAndAbsoluteExpiry(t *testing.T) {
	t.Parallel()
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, envOptions{driver: driver, configure: lifetimes(60, 150, 0)})
		s := signIn(t, e)
		// Idle: unused for longer than 60 s, the token is dead.
		idle := signIn2(t, e, &s.c)
		e.advance(59 * time.Second)
		s.rotate(t) // renewed at 59 s: now good until 119 s
		e.advance(2 * time.Second)
		wantInvalidGrant(t, e.refresh(t, &s.c, idle.rt)) // 61 s unused
		e.advance(57 * time.Second)                      // 118 s: within the renewed idle lifetime
		s.rotate(t)                                      // renewed until 178 s, but absolute is 150 s
		e.advance(31 * time.Second)                      // 149 s
		s.rotate(t)
		e.advance(1 * time.Second) // 150 s: the absolute lifetime is over, though the token is 1 s old
		wantInvalidGrant(t, e.refresh(t, &s.c, s.rt))
		if e.active(t, &s.c, s.rt) {
			t.Fatal("introspection shows an expired refresh token as active")
		}
	})
}

// TestUserDisableAndPasswordChangeRevokeSessions: disabling a user or changing the password
// revokes every family of the user and their access tokens at once.
func TestUserDisableAndPasswordChangeRevokeSessions(t *testing.T) {
	t.Parallel()
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, envOptions{driver: driver, configure: lifetimes(3600, 86400, 30)})
		s := signIn(t, e)
		s2 := signIn2(t, e, &s.c)
		other := e.createUser(t, "bob", "correct horse battery")
		_ = other
		bob := e.login(t, &s.c, "bob", "correct horse battery", "offline_access")

		st, body := e.inst.Admin(t, "POST", "/users/"+s.uid+"/password", map[string]any{"password": "a new long password"})
		if st != 200 || body["revoked_sessions"] != float64(2) {
			t.Fatalf("password change: %d %v", st, body)
		}
		for _, tok := range []string{s.at, s.rt, s2.at, s2.rt} {
			if e.active(t, &s.c, tok) {
				t.Fatal("a session survived the password change")
			}
		}
		wantInvalidGrant(t, e.refresh(t, &s.c, s.rt))
		// Bob is untouched.
		if !e.active(t, &s.c, bob.str("access_token")) || !e.active(t, &s.c, bob.str("refresh_token")) {
			t.Fatal("another user's session was revoked")
		}
		// The old password no longer works; the new one does.
		wantInvalidGrant(t, e.token(t, map[string]string{"grant_type": "password", "username": "ann", "password": "correct horse battery"}, &s.c))
		s3 := e.login(t, &s.c, "ann", "a new long password", "offline_access")

		// Disable: every session ends, and no new one starts.
		st, body = e.inst.Admin(t, "POST", "/users/"+s.uid+"/disable", nil)
		if st != 200 || body["disabled"] != true || body["revoked_sessions"] != float64(1) {
			t.Fatalf("disable: %d %v", st, body)
		}
		if e.active(t, &s.c, s3.str("access_token")) || e.active(t, &s.c, s3.str("refresh_token")) {
			t.Fatal("a session survived the disable")
		}
		wantInvalidGrant(t, e.refresh(t, &s.c, s3.str("refresh_token")))
		wantInvalidGrant(t, e.token(t, map[string]string{"grant_type": "password", "username": "ann", "password": "a new long password"}, &s.c))
		// Enabled again: a fresh sign-in works, the old sessions stay dead.
		if st, body := e.inst.Admin(t, "POST", "/users/"+s.uid+"/enable", nil); st != 200 || body["disabled"] != false {
			t.Fatalf("enable: %d %v", st, body)
		}
		e.login(t, &s.c, "ann", "a new long password", "offline_access")
		wantInvalidGrant(t, e.refresh(t, &s.c, s3.str("refresh_token")))
	})
}

// TestRefreshRefusedForChangedUser: a user changed in the store without their sessions being
// revoked (a password change racing a sign-in, another replica mid-way) gets no successor; the
// refresh revokes the family, its access tokens die and the old token stays unrotated.
func TestRefreshRefusedForChangedUser(t *testing.T) {
	t.Parallel()
	drivers(t, func(t *testing.T, driver string) {
		e := newEnv(t, envOptions{driver: driver, configure: lifetimes(3600, 86400, 0)})
		s := signIn(t, e)
		s.rotate(t)
		ctx := context.Background()
		e.advance(time.Second)
		if err := e.inst.Svc.Store.SetUserPassword(ctx, s.uid, "elsewhere", e.clk.Now()); err != nil {
			t.Fatal(err)
		}
		wantInvalidGrant(t, e.refresh(t, &s.c, s.rt))
		if e.active(t, &s.c, s.at) {
			t.Fatal("an access token of the family survived the refused refresh")
		}
		tok, fam, err := e.inst.Svc.Store.GetRefreshToken(ctx, secret.Hash(s.rt))
		if err != nil {
			t.Fatal(err)
		}
		if tok.RotatedAt != nil || fam.RevokedAt == nil || fam.RevokeReason != "user changed or disabled" {
			t.Fatalf("token rotated %v, family revoked %v (%q)", tok.RotatedAt, fam.RevokedAt, fam.RevokeReason)
		}
	})
}

// TestConcurrentRotation: many concurrent refreshes with one token yield exactly one successor.
// With no grace, one wins and the rest are reuse (so the family dies); with grace, every caller
// gets the same successor.
func TestConcurrentRotation(t *testing.T) {
	t.Parallel()
	const n = 12
	race := func(t *testing.T, envs []*env, c client, rt string) []answer {
		var wg sync.WaitGroup
		out := make([]answer, n)
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				out[i] = envs[i%len(envs)].refresh(t, &c, rt)
			}()
		}
		close(start)
		wg.Wait()
		return out
	}
	check := func(t *testing.T, got []answer, grace bool) {
		t.Helper()
		ok, successors := 0, map[string]bool{}
		for _, a := range got {
			switch a.Status {
			case http.StatusOK:
				ok++
				successors[a.str("refresh_token")] = true
			case http.StatusForbidden:
				if a.str("error") != "invalid_grant" {
					t.Fatalf("loser: %s", a.Raw)
				}
			default:
				t.Fatalf("unexpected answer %d %s", a.Status, a.Raw)
			}
		}
		if len(successors) != 1 {
			t.Fatalf("%d distinct successors, want exactly 1", len(successors))
		}
		if grace && ok != n {
			t.Fatalf("with grace %d of %d succeeded, want all", ok, n)
		}
		if !grace && ok != 1 {
			t.Fatalf("without grace %d of %d succeeded, want exactly 1", ok, n)
		}
	}
	for _, grace := range []int{0, 30} {
		name := map[bool]string{false: "no grace", true: "grace"}[grace > 0]
		t.Run(name, func(t *testing.T) {
			drivers(t, func(t *testing.T, driver string) {
				e := newEnv(t, envOptions{driver: driver, configure: lifetimes(3600, 86400, grace)})
				s := signIn(t, e)
				check(t, race(t, []*env{e}, s.c, s.rt), grace > 0)
			})
			// Two posgate processes on one PostgreSQL database.
			t.Run("two replicas", func(t *testing.T) {
				dsn := pgtest.NewDatabase(t)
				dir := t.TempDir()
				tok := secret.Generate(secret.PrefixAdminToken)
				a := newEnv(t, envOptions{dsn: dsn, dataDir: dir, adminToken: tok, configure: lifetimes(3600, 86400, grace)})
				b := newEnv(t, envOptions{dsn: dsn, dataDir: dir, adminToken: tok, clk: a.clk, configure: lifetimes(3600, 86400, grace)})
				s := signIn(t, a)
				check(t, race(t, []*env{a, b}, s.c, s.rt), grace > 0)
			})
		})
	}
}

// TestRefreshBoundToClientAndAudience: another client cannot use a refresh token (and cannot kill
// the session with it); a refresh may narrow the scope but not widen it or change the audience,
// and a refused refresh does not cost the client its token.
func TestRefreshBoundToClientAndAudience(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{configure: lifetimes(3600, 86400, 0)})
	s := signIn(t, e)
	other := e.createClient(t, []string{"password", "refresh_token"}, []string{"rentals", "offline_access"}, []string{apiAudience})
	wantInvalidGrant(t, e.refresh(t, &other, s.rt))
	checkError(t, e.token(t, map[string]string{"grant_type": "refresh_token", "refresh_token": s.rt, "scope": "rentals admin"}, &s.c), 403, "access_denied", false)
	checkError(t, e.token(t, map[string]string{"grant_type": "refresh_token", "refresh_token": s.rt, "audience": otherAud}, &s.c), 403, "access_denied", false)
	// The token still works after those refusals, and a narrower scope is granted for the access
	// token only.
	a := e.token(t, map[string]string{"grant_type": "refresh_token", "refresh_token": s.rt, "scope": "rentals", "audience": apiAudience}, &s.c)
	if a.Status != 200 || a.str("scope") != "rentals" || claims(t, a.str("access_token"))["scope"] != "rentals" {
		t.Fatalf("narrowed refresh: %d %s", a.Status, a.Raw)
	}
	s.rt = a.str("refresh_token")
	b := e.refresh(t, &s.c, s.rt)
	if b.Status != 200 || b.str("scope") != "offline_access rentals" {
		t.Fatalf("the family's scope must be unchanged: %s", b.Raw)
	}
	// Without offline_access there is no refresh token.
	if a := e.login(t, &s.c, "ann", "correct horse battery", "rentals"); a.str("refresh_token") != "" {
		t.Fatal("refresh token without offline_access")
	}
	// offline_access for a client without the refresh_token grant is not granted.
	pw := e.createClient(t, []string{"password"}, []string{"rentals"}, []string{apiAudience})
	if a := e.login(t, &pw, "ann", "correct horse battery", "offline_access rentals"); a.str("refresh_token") != "" || a.str("scope") != "rentals" {
		t.Fatalf("offline_access without the refresh_token grant: %s", a.Raw)
	}
}
