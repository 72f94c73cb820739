package oauth_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/dialect/chef"
	"github.com/posgate/posgate/internal/dialect/jackpot"
	"github.com/posgate/posgate/internal/oauth"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// The reserved list is the dialects' own audience names, so renaming one cannot silently reopen
// the token endpoint for it.
func TestReservedAudiencesAreTheDialects(t *testing.T) {
	reserved := newEnv(t, envOptions{}).inst.Svc.Reserved
	want := []string{jackpot.Audience, chef.Audience}
	if !slices.Equal(reserved, want) {
		t.Fatalf("reserved audiences = %v, want %v", reserved, want)
	}
	for _, a := range want {
		if !reserved.Has(a) {
			t.Errorf("%q not reserved", a)
		}
	}
	if reserved.Has("") || reserved.Has("Jackpot") || reserved.Has(apiAudience) {
		t.Error("an unreserved audience is reported reserved")
	}
}

// TestReservedAudiencesRefused: no grant of /oauth/token mints a token for jackpot's or chef's
// audience — not even for a client that lists it (a client stored before the admin API refused
// them), and not through an audience the endpoint picks itself (a client's only audience, a
// refresh family's). A password request for one is refused before any password check. The admin
// API refuses such audiences in new clients.
func TestReservedAudiencesRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{configure: noThrottle})
	ctx := t.Context()
	for _, aud := range e.inst.Svc.Reserved {
		st, body := e.inst.Admin(t, "POST", "/clients", map[string]any{"name": "m2m", "grant_types": []string{"client_credentials"},
			"scopes": []string{}, "audiences": []string{aud}})
		if st != http.StatusBadRequest || body["error"] != "invalid_request" {
			t.Fatalf("admin POST /clients with audience %q: %d %v", aud, st, body)
		}
	}

	c := e.createClient(t, []string{"client_credentials", "password", "refresh_token"}, []string{"read", "offline_access"}, []string{apiAudience})
	solo := e.createClient(t, []string{"password"}, []string{"read"}, []string{apiAudience})
	uid := e.createUser(t, "ann", "correct horse battery")
	// Make them legacy clients: c lists the reserved audiences besides its own, solo only jackpot.
	setAudiences := func(id string, auds []string) {
		sc, err := e.inst.Svc.Store.GetClient(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		sc.Audiences = auds
		if err := e.inst.Svc.Store.UpdateClient(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	setAudiences(c.Internal, append([]string{apiAudience}, e.inst.Svc.Reserved...))
	setAudiences(solo.Internal, []string{jackpot.Audience})
	e.advance(2 * time.Second) // past the client cache

	for _, aud := range e.inst.Svc.Reserved {
		for _, style := range []authStyle{inBody, inBasic} {
			a := e.post(t, "/oauth/token", map[string]string{"grant_type": "client_credentials", "audience": aud}, &c, style, style == inBasic)
			checkError(t, a, http.StatusForbidden, "access_denied", style == inBasic)
		}
		a := e.token(t, map[string]string{"grant_type": "password", "username": "ann", "password": "correct horse battery", "audience": aud}, &c)
		checkError(t, a, http.StatusForbidden, "access_denied", false)
		a = e.token(t, map[string]string{"grant_type": "password", "username": "ann", "password": "wrong", "audience": aud}, &c)
		checkError(t, a, http.StatusForbidden, "access_denied", false)
	}
	if n := len(e.audit(t, "login.failed")) + len(e.audit(t, "login.ok")); n != 0 {
		t.Fatalf("%d password checks ran for a reserved audience", n)
	}
	// The audience the endpoint would pick itself: solo's only one.
	checkError(t, e.token(t, map[string]string{"grant_type": "password", "username": "ann", "password": "correct horse battery"}, &solo),
		http.StatusForbidden, "access_denied", false)

	// A refresh family for a reserved audience (made before they were refused) yields nothing, and
	// keeps its token (a refused request never costs the client its refresh token).
	now := e.clk.Now()
	rt := secret.Generate(oauth.RefreshTokenPrefix)
	fam := &store.RefreshFamily{ID: secret.NewID("rf_"), ClientID: c.Internal, UserID: uid, Audience: jackpot.Audience,
		Scope: "read offline_access", CreatedAt: now, AbsoluteExpiresAt: now.Add(time.Hour)}
	if err := e.inst.Svc.Store.CreateRefreshFamily(ctx, fam, &store.RefreshToken{Hash: secret.Hash(rt), FamilyID: fam.ID,
		CreatedAt: now, IdleExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	checkError(t, e.refresh(t, &c, rt), http.StatusForbidden, "access_denied", false)
	checkError(t, e.token(t, map[string]string{"grant_type": "refresh_token", "refresh_token": rt, "audience": jackpot.Audience}, &c),
		http.StatusForbidden, "access_denied", false)

	// The client's own audience still works, in every grant.
	a := e.token(t, map[string]string{"grant_type": "client_credentials", "audience": apiAudience}, &c)
	if a.Status != http.StatusOK || claims(t, a.str("access_token"))["aud"] != apiAudience {
		t.Fatalf("client_credentials for its own audience: %d %s", a.Status, a.Raw)
	}
	a = e.token(t, map[string]string{"grant_type": "password", "username": "ann", "password": "correct horse battery",
		"audience": apiAudience, "scope": "read offline_access"}, &c)
	if a.Status != http.StatusOK || claims(t, a.str("access_token"))["aud"] != apiAudience {
		t.Fatalf("password grant for its own audience: %d %s", a.Status, a.Raw)
	}
	if a = e.refresh(t, &c, a.str("refresh_token")); a.Status != http.StatusOK || claims(t, a.str("access_token"))["aud"] != apiAudience {
		t.Fatalf("refresh for its own audience: %d %s", a.Status, a.Raw)
	}
}
