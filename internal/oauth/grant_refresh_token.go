package oauth

import (
	"context"
	"strings"
)

// refreshGrant is the refresh_token grant (RFC 6749 §6) with rotation, reuse detection and grace;
// see refresh.go. The client must be the one the refresh token was issued to. A narrower scope may
// be requested for the new access token; the family keeps its scope. A requested audience must be
// the family's.
type refreshGrant struct{ s *Server }

func (refreshGrant) Type() string { return GrantRefreshToken }

func (g refreshGrant) Handle(ctx context.Context, gr *GrantRequest) (*TokenResponse, error) {
	s := g.s
	if gr.RefreshToken == "" {
		return nil, invalidRequest("refresh_token is required")
	}
	requested, err := parseScope(gr.Scope)
	if err != nil {
		return nil, err
	}
	rot, err := s.rotate(ctx, gr.Client, gr.RefreshToken, gr.Addr, gr.Now, refreshWant{audience: gr.Audience, scope: requested})
	if err != nil {
		return nil, err
	}
	scope := requested
	if len(scope) == 0 {
		scope = strings.Fields(rot.fam.Scope)
	}
	fam := rot.fam
	at, exp, err := s.mint(ctx, gr, fam.UserID, fam.Audience, scope, GrantRefreshToken, fam.ID, true)
	if err != nil {
		return nil, err
	}
	return &TokenResponse{AccessToken: at, RefreshToken: rot.value, ExpiresIn: exp, Scope: joinScope(scope)}, nil
}
