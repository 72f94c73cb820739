package oauth

import (
	"context"
	"slices"
	"strings"

	"github.com/posgate/posgate/internal/store"
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
	var scope []string
	check := func(fam *store.RefreshFamily) error {
		if gr.Audience != "" && gr.Audience != fam.Audience {
			return Fail(CodeAccessDenied, "the refresh token was not issued for this audience")
		}
		if s.svc.Reserved.Has(fam.Audience) { // a family from before reserved audiences were refused
			return errReservedAudience(fam.Audience)
		}
		famScope := strings.Fields(fam.Scope)
		scope = famScope
		if len(requested) > 0 {
			for _, sc := range requested {
				if !slices.Contains(famScope, sc) {
					return Fail(CodeAccessDenied, "the scope "+sc+" was not granted to this session")
				}
			}
			scope = requested
		}
		return nil
	}
	rot, err := s.rotate(ctx, gr.Client, gr.RefreshToken, gr.Addr, gr.Now, check)
	if err != nil {
		return nil, err
	}
	fam := rot.fam
	at, exp, err := s.mint(ctx, gr, fam.UserID, fam.Audience, scope, GrantRefreshToken, fam.ID, true)
	if err != nil {
		return nil, err
	}
	return &TokenResponse{AccessToken: at, RefreshToken: rot.value, ExpiresIn: exp, Scope: joinScope(scope)}, nil
}
