package oauth

import (
	"context"
	"slices"
)

// clientCredentials is the client_credentials grant (RFC 6749 §4.4): a confidential client gets a
// token for itself. It never yields a refresh token (offline_access is dropped from the scope).
// Without an audience the token is for posgate itself (the issuer URL).
type clientCredentials struct{ s *Server }

func (clientCredentials) Type() string { return GrantClientCredentials }

func (g clientCredentials) Handle(ctx context.Context, gr *GrantRequest) (*TokenResponse, error) {
	if gr.Client.SecretHash == nil {
		return nil, Fail(CodeUnauthorizedClient, "a public client may not use the client_credentials grant")
	}
	aud := gr.Audience
	if aud == "" {
		aud = g.s.svc.Config.Server.Issuer
		if aud == "" {
			return nil, invalidRequest("audience is required")
		}
	} else if !slices.Contains(gr.Client.Audiences, aud) && aud != g.s.svc.Config.Server.Issuer {
		return nil, Fail(CodeAccessDenied, "the client may not request this audience")
	}
	requested, err := parseScope(gr.Scope)
	if err != nil {
		return nil, err
	}
	scope, err := grantScope(requested, gr.Client.Scopes, false)
	if err != nil {
		return nil, err
	}
	at, exp, err := g.s.mint(ctx, gr, gr.Client.ID, aud, scope, GrantClientCredentials, "", false)
	if err != nil {
		return nil, err
	}
	return &TokenResponse{AccessToken: at, ExpiresIn: exp, Scope: joinScope(scope)}, nil
}
