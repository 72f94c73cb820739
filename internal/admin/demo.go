package admin

import (
	"context"
	"fmt"

	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// demoClientName names the client `serve --demo` creates.
const demoClientName = "posgate demo"

// Demo creates an OAuth client for posgate's own client_credentials grant and returns curl lines
// that get a token and introspect it. Secrets are stored hashed, so a second --demo cannot show the
// first client's secret again: it disables the earlier demo clients and creates a fresh one.
func (a *API) Demo(ctx context.Context, baseURL string) ([]string, error) {
	list, err := a.svc.Store.ListClients(ctx)
	if err != nil {
		return nil, err
	}
	now := a.svc.Clock.Now()
	for _, c := range list {
		if c.Name == demoClientName && !c.Disabled {
			c.Disabled, c.UpdatedAt = true, now
			if err := a.svc.Store.UpdateClient(ctx, c); err != nil {
				return nil, err
			}
		}
	}
	clientID := secret.Generate(secret.PrefixClientID)
	clientSecret := secret.Generate(secret.PrefixClientSecret)
	c := &store.Client{ID: secret.NewID("cl_"), Name: demoClientName, ClientIDHash: secret.Hash(clientID), ClientIDHint: clientID,
		SecretHash: secret.Hash(clientSecret), GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"demo"},
		Audiences: []string{}, CreatedAt: now, UpdatedAt: now}
	if err := a.svc.Store.CreateClient(ctx, c); err != nil {
		return nil, err
	}
	a.svc.Audit(ctx, store.AuditEvent{Actor: "admin", Action: "client.create", Target: c.ID, Outcome: "ok", Detail: "serve --demo"})
	auth := fmt.Sprintf("-u '%s:%s'", clientID, clientSecret)
	return []string{
		fmt.Sprintf("# posgate OAuth client %s (client_credentials, scope demo)", c.ID),
		fmt.Sprintf("TOKEN=$(curl -sk %s -d grant_type=client_credentials -d scope=demo %s/oauth/token | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')", auth, baseURL),
		fmt.Sprintf("curl -sk %s --data-urlencode \"token=$TOKEN\" %s/oauth/introspect", auth, baseURL),
	}, nil
}
