package jackpot

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/posgate/posgate/internal/oauth"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// DemoClientName names the client `posgate serve --demo` creates.
const DemoClientName = "jackpot-demo"

// Demo gives `posgate serve --demo` its jackpot client and returns curl lines for the three
// means. Secrets are shown once and stored hashed or sealed, so a client made by an earlier run
// cannot print its API key again: each run re-issues the same demo client's API key and secret
// (its API signature, kept sealed, is shown again), leaving exactly one demo client.
func (m *Module) Demo(ctx context.Context, baseURL string) ([]string, error) {
	cl, apiKey, clientSecret, err := oauth.DemoClient(ctx, m.svc, store.Client{Name: DemoClientName,
		GrantTypes: []string{GrantJWTBearer, GrantClientCredentials}, APIKey: true}, func() (string, string) {
		k := secret.Generate(secret.PrefixClientID)
		return k, secret.PrefixClientID + "…" + k[len(k)-4:] // as the admin API shows API keys
	})
	if err != nil {
		return nil, fmt.Errorf("jackpot demo: %w", err)
	}
	signature, err := m.demoSignature(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("jackpot demo: %w", err)
	}
	m.announceClientChanged(ctx, cl.ID)

	base := strings.TrimSuffix(baseURL, "/")
	m2m, _ := json.Marshal(map[string]string{"grant_type": GrantClientCredentials, "client_id": apiKey, "client_secret": clientSecret})
	session, _ := json.Marshal(map[string]string{"grant_type": GrantJWTBearer, "client_id": apiKey, "assertion": "ASSERTION"})
	// The assertion is signed when the line runs: its iat must be within the window, and each
	// notificationKey is accepted once.
	sign := oauth.DemoHS256Shell(`printf '{"amount":50,"iat":%s,"notificationKey":"demo-%s","userId":"demo-user"}' "$(date +%s)" "$(openssl rand -hex 8)"`,
		`'`+signature+`'`)
	lines := []string{
		fmt.Sprintf("# jackpot client %s: API key (client_id) %s, client secret %s, API signature %s", cl.ID, apiKey, clientSecret, signature),
		"# jackpot machine-to-machine token:",
		fmt.Sprintf("%s -X POST %s%s -H 'Content-Type: application/json' -d '%s'; echo", oauth.DemoCurl, base, TokenPath, m2m),
		fmt.Sprintf("# jackpot session token (an HS256 assertion signed here by openssl with the API signature; each is accepted once, within %d s of its iat):",
			int64(m.cfg.window.Past.Seconds())),
		"ASSERTION=$(" + sign + ")",
		fmt.Sprintf("%s -X POST %s%s -H 'Content-Type: application/json' -d '%s'; echo", oauth.DemoCurl, base, TokenPath,
			strings.Replace(string(session), `"ASSERTION"`, `"'"$ASSERTION"'"`, 1)),
	}
	if path := m.apiKeyRoute(); path != "" {
		lines = append(lines, "# jackpot API-key route:",
			fmt.Sprintf("%s %s%s -H 'apikey: %s'; echo", oauth.DemoCurl, base, path, apiKey))
	}
	return lines, nil
}

// demoSignature returns the demo client's API signature: its newest key when that one has no
// end (an earlier run's), else a new one.
func (m *Module) demoSignature(ctx context.Context, cl *store.Client) (string, error) {
	if len(cl.AssertionKeys) > 0 && cl.AssertionKeys[0].NotAfter == nil {
		k := cl.AssertionKeys[0]
		plain, err := m.svc.Sealer.Open(k.Sealed, AssertionKeyAD(cl.ID, k.ID))
		if err == nil {
			return string(plain), nil
		}
	}
	now := m.svc.Clock.Now()
	key, signature, err := NewAssertionKey(m.svc.Sealer, cl.ID, now)
	if err != nil {
		return "", err
	}
	if err := m.svc.Store.AddAssertionKey(ctx, cl.ID, key, now); err != nil {
		return "", fmt.Errorf("API signature: %w", err)
	}
	return signature, nil
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
