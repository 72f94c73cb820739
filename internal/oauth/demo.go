package oauth

import (
	"context"
	"fmt"
	"strings"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// DemoClient creates a fresh demo client (for `posgate serve --demo`) and disables earlier clients
// of the same name: secrets are stored hashed, so an earlier run's secret cannot be shown again,
// and exactly one demo credential set of each kind keeps working. It returns the client and its
// client_id and secret in clear (to print, never to log).
func DemoClient(ctx context.Context, svc *app.Services, name string, grants, scopes, audiences []string) (*store.Client, string, string, error) {
	now := svc.Clock.Now()
	existing, err := svc.Store.ListClients(ctx)
	if err != nil {
		return nil, "", "", err
	}
	for _, c := range existing {
		if c.Name == name && !c.Disabled {
			c.Disabled, c.UpdatedAt = true, now
			if err := svc.Store.UpdateClient(ctx, c); err != nil {
				return nil, "", "", err
			}
		}
	}
	id := secret.Generate(secret.PrefixClientID)
	sec := secret.Generate(secret.PrefixClientSecret)
	c := &store.Client{ID: secret.NewID("cl_"), Name: name, ClientIDHash: secret.Hash(id), ClientIDHint: id,
		SecretHash: secret.Hash(sec), GrantTypes: grants, Scopes: scopes, Audiences: audiences, CreatedAt: now, UpdatedAt: now}
	if err := svc.Store.CreateClient(ctx, c); err != nil {
		return nil, "", "", err
	}
	if svc.Events != nil {
		_ = svc.Events.Publish(ctx, events.TopicClientChanged, []byte(`{"id":"`+c.ID+`"}`))
	}
	return c, id, sec, nil
}

// Demo seeds a client_credentials client and prints how to get a token and introspect it.
func (s *Server) Demo(ctx context.Context, baseURL string) ([]string, error) {
	const aud = "https://api.posgate.demo"
	c, id, sec, err := DemoClient(ctx, s.svc, "posgate-demo", []string{GrantClientCredentials}, []string{"read"}, []string{aud})
	if err != nil {
		return nil, fmt.Errorf("oauth demo: %w", err)
	}
	base := strings.TrimSuffix(baseURL, "/")
	return []string{
		fmt.Sprintf("# client %s: client_id %s, client_secret %s (client_credentials, audience %s, scope read)", c.ID, id, sec, aud),
		fmt.Sprintf("TOKEN=$(curl -s %s/oauth/token -u '%s:%s' -d grant_type=client_credentials -d audience=%s -d scope=read | jq -r .access_token)", base, id, sec, aud),
		fmt.Sprintf("curl -s %s/oauth/introspect -u '%s:%s' -d \"token=$TOKEN\"", base, id, sec),
	}, nil
}
