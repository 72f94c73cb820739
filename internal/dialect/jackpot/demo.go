package jackpot

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// DemoClientName names the client `posgate serve --demo` creates.
const DemoClientName = "jackpot-demo"

// Demo creates a jackpot client for `posgate serve --demo` and returns curl lines for the three
// means. Secrets are shown once and stored hashed or sealed, so a client created by an earlier
// run cannot print its API key again: each run creates a fresh demo client and disables the
// earlier ones, leaving exactly one working demo credential set.
func (m *Module) Demo(ctx context.Context, baseURL string) ([]string, error) {
	now := m.svc.Clock.Now()
	existing, err := m.svc.Store.ListClients(ctx)
	if err != nil {
		return nil, fmt.Errorf("jackpot demo: list clients: %w", err)
	}
	for _, c := range existing {
		if c.Name == DemoClientName && !c.Disabled {
			c.Disabled = true
			c.UpdatedAt = now
			if err := m.svc.Store.UpdateClient(ctx, c); err != nil {
				return nil, fmt.Errorf("jackpot demo: disable earlier demo client: %w", err)
			}
		}
	}

	apiKey := secret.Generate(secret.PrefixClientID)
	clientSecret := secret.Generate(secret.PrefixClientSecret)
	cl := &store.Client{
		ID:           secret.NewID("cl_"),
		Name:         DemoClientName,
		ClientIDHash: secret.Hash(apiKey),
		ClientIDHint: secret.PrefixClientID + "…" + apiKey[len(apiKey)-4:], // as the admin API shows API keys
		SecretHash:   secret.Hash(clientSecret),
		GrantTypes:   []string{GrantJWTBearer, GrantClientCredentials},
		APIKey:       true,
		CreatedAt:    now,
		UpdatedAt:    now,
	}
	key, signature, err := NewAssertionKey(m.svc.Sealer, cl.ID, now)
	if err != nil {
		return nil, fmt.Errorf("jackpot demo: %w", err)
	}
	cl.AssertionKeys = []store.AssertionKey{key}
	if err := m.svc.Store.CreateClient(ctx, cl); err != nil {
		return nil, fmt.Errorf("jackpot demo: create client: %w", err)
	}

	assertion, err := SignAssertion([]byte(signature), map[string]any{
		"amount":          50,
		"iat":             now.Unix(),
		"notificationKey": "demo-" + secret.NewID(""),
		"userId":          "demo-user",
	})
	if err != nil {
		return nil, fmt.Errorf("jackpot demo: sign assertion: %w", err)
	}
	base := strings.TrimSuffix(baseURL, "/")
	body := func(v map[string]string) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	lines := []string{
		fmt.Sprintf("# jackpot client %s: API key (client_id) %s, client secret %s, API signature %s", cl.ID, apiKey, clientSecret, signature),
		"# jackpot machine-to-machine token:",
		fmt.Sprintf("curl -sk -X POST %s%s -H 'Content-Type: application/json' -d '%s'", base, TokenPath,
			body(map[string]string{"grant_type": GrantClientCredentials, "client_id": apiKey, "client_secret": clientSecret})),
		fmt.Sprintf("# jackpot session token (this assertion is valid once, for %d s):", int64(m.cfg.window.Past.Seconds())),
		fmt.Sprintf("curl -sk -X POST %s%s -H 'Content-Type: application/json' -d '%s'", base, TokenPath,
			body(map[string]string{"grant_type": GrantJWTBearer, "client_id": apiKey, "assertion": assertion})),
	}
	if path := m.apiKeyRoute(); path != "" {
		lines = append(lines, "# jackpot API-key route:",
			fmt.Sprintf("curl -sk %s%s -H 'apikey: %s'", base, path, apiKey))
	}
	return lines, nil
}

// apiKeyRoute is the path of a configured GET route that accepts the API key ("" if none).
func (m *Module) apiKeyRoute() string {
	if m.svc.Config == nil {
		return ""
	}
	for _, rt := range m.svc.Config.Routes {
		if strings.Contains(rt.Path, "{") {
			continue
		}
		get := len(rt.Methods) == 0
		for _, meth := range rt.Methods {
			get = get || strings.EqualFold(meth, "GET")
		}
		for _, a := range rt.Auth {
			if a == AuthAPIKey && get {
				return rt.Path
			}
		}
	}
	return ""
}

// SignAssertion signs claims as a jackpot jwt-bearer assertion (HS256 with the API signature),
// for the demo and for Go callers; any JWT library does the same.
func SignAssertion(apiSignature []byte, claims map[string]any) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims)).SignedString(apiSignature)
}
