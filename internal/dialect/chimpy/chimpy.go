// Package chimpy is the chimpy dialect (docs/dialects/chimpy.md): the protected-API side of
// chimpy's Auth0-style tokens (the "chimpy" authenticator, RFC 6750 answers) and the users who
// sign in with the password grant (admin API). The token endpoint itself — password and
// refresh_token grants, rotating refresh-token families — is posgate's OAuth server
// (internal/oauth), because the same mechanism serves every dialect that speaks OAuth.
package chimpy

import (
	"fmt"
	"net/http"

	"github.com/posgate/posgate/internal/app"
)

// Module mounts chimpy's admin routes and registers its authenticator.
type Module struct {
	svc  *app.Services
	auth *Authenticator
}

// New returns the chimpy module.
func New(svc *app.Services) (app.Module, error) {
	if svc == nil || svc.Store == nil || svc.Verifier == nil || svc.Revoker == nil || svc.Clock == nil || svc.Auth == nil {
		return nil, fmt.Errorf("chimpy: services incomplete (store, verifier, revoker, clock and auth are required)")
	}
	return &Module{svc: svc, auth: NewAuthenticator(svc)}, nil
}

// Mount registers the "chimpy" authenticator and the users admin routes (relative to
// /admin/api/v1).
func (m *Module) Mount(_, admin app.Mux) error {
	m.svc.Auth.Register(AuthenticatorName, m.auth)
	u := &users{svc: m.svc}
	admin.Handle("POST /users", http.HandlerFunc(u.create))
	admin.Handle("GET /users", http.HandlerFunc(u.list))
	admin.Handle("GET /users/{id}", http.HandlerFunc(u.get))
	admin.Handle("POST /users/{id}/disable", http.HandlerFunc(u.disable))
	admin.Handle("POST /users/{id}/enable", http.HandlerFunc(u.enable))
	admin.Handle("POST /users/{id}/password", http.HandlerFunc(u.password))
	return nil
}
