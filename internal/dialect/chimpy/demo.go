package chimpy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/posgate/posgate/internal/oauth"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// Demo names (`posgate serve --demo`).
const (
	DemoClientName = "chimpy-demo"
	DemoUsername   = "demo@chimpy.example"
	DemoAudience   = "https://api.chimpy.example"
)

// Demo seeds a chimpy client (password and refresh_token grants) and a demo user with a fresh
// password, and prints the sign-in and refresh calls. Each run replaces the previous demo
// credentials: the client gets a new client_id and secret, the user's password (and so its
// sessions) is reset.
func (m *Module) Demo(ctx context.Context, baseURL string) ([]string, error) {
	c, id, sec, err := oauth.DemoClient(ctx, m.svc, store.Client{Name: DemoClientName, GrantTypes: []string{oauth.GrantPassword, oauth.GrantRefreshToken},
		Scopes: []string{"rentals", oauth.ScopeOfflineAccess}, Audiences: []string{DemoAudience}}, nil)
	if err != nil {
		return nil, fmt.Errorf("chimpy demo: %w", err)
	}
	password := "demo-" + secret.NewID("")
	hash, err := secret.HashPassword(password)
	if err != nil {
		return nil, err
	}
	now := m.svc.Clock.Now()
	u, err := m.svc.Store.GetUserByUsername(ctx, DemoUsername)
	switch {
	case errors.Is(err, store.ErrNotFound):
		err = m.svc.Store.CreateUser(ctx, &store.User{ID: secret.NewID("us_"), Username: DemoUsername, PasswordHash: hash, CreatedAt: now, UpdatedAt: now})
	case err == nil:
		if err = m.svc.Store.SetUserPassword(ctx, u.ID, hash, now); err == nil {
			_ = m.svc.Store.SetUserDisabled(ctx, u.ID, false, now)
			_, err = oauth.RevokeUserSessions(ctx, m.svc, u.ID, "demo password reset")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("chimpy demo: user: %w", err)
	}
	body, _ := json.Marshal(map[string]string{"grant_type": "password", "client_id": id, "client_secret": sec,
		"audience": DemoAudience, "username": DemoUsername, "password": password, "scope": "offline_access rentals"})
	base := strings.TrimSuffix(baseURL, "/")
	return []string{
		fmt.Sprintf("# client %s: client_id %s, client_secret %s; user %s, password %s (see docs/dialects/chimpy.md)", c.ID, id, sec, DemoUsername, password),
		fmt.Sprintf("LOGIN=$(%s %s/oauth/token -H 'Content-Type: application/json' -d '%s'); echo \"$LOGIN\"", oauth.DemoCurl, base, body),
		fmt.Sprintf("%s %s/oauth/token -u '%s:%s' -d grant_type=refresh_token -d \"refresh_token=$(echo \"$LOGIN\" | jq -r .refresh_token)\"; echo", oauth.DemoCurl, base, id, sec),
	}, nil
}
