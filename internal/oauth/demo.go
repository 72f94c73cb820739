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

// DemoCurl starts every curl line `posgate serve --demo` prints: quiet, but errors shown, and an
// HTTP error fails the command with the answer's body printed.
const DemoCurl = "curl -sS --fail-with-body"

// DemoClient gives `posgate serve --demo` its client named spec.Name, with spec's grants, scopes,
// audiences and API-key flag and a fresh identifier and secret. Secrets are stored hashed, so an
// earlier run's cannot be shown again: the client an earlier --demo made is re-issued in place
// (same internal id) rather than a second one created, and any other client of that name is
// disabled, so exactly one demo client of each kind exists and works. newID returns the new
// client_id and the hint stored to display it (an API key is shown only in part); nil means a
// plain client_id, shown whole. It returns the client and its client_id and secret in clear (to
// print, never to log).
func DemoClient(ctx context.Context, svc *app.Services, spec store.Client, newID func() (id, hint string)) (*store.Client, string, string, error) {
	if newID == nil {
		newID = func() (string, string) {
			id := secret.Generate(secret.PrefixClientID)
			return id, id
		}
	}
	now := svc.Clock.Now()
	existing, err := svc.Store.ListClients(ctx)
	if err != nil {
		return nil, "", "", err
	}
	var keep *store.Client
	for _, c := range existing { // oldest first: keep the newest, preferring an enabled one
		if c.Name == spec.Name && (keep == nil || !c.Disabled || keep.Disabled) {
			keep = c
		}
	}
	for _, c := range existing {
		if c.Name == spec.Name && c != keep && !c.Disabled {
			c.Disabled, c.UpdatedAt = true, now
			if err := svc.Store.UpdateClient(ctx, c); err != nil {
				return nil, "", "", err
			}
		}
	}
	id, hint := newID()
	sec := secret.Generate(secret.PrefixClientSecret)
	if keep == nil {
		keep = &spec
		keep.ID, keep.ClientIDHash, keep.ClientIDHint, keep.SecretHash = secret.NewID("cl_"), secret.Hash(id), hint, secret.Hash(sec)
		keep.Disabled, keep.CreatedAt, keep.UpdatedAt = false, now, now
		if err := svc.Store.CreateClient(ctx, keep); err != nil {
			return nil, "", "", err
		}
	} else {
		keep.GrantTypes, keep.Scopes, keep.Audiences, keep.Disabled, keep.UpdatedAt = spec.GrantTypes, spec.Scopes, spec.Audiences, false, now
		if err := svc.Store.UpdateClient(ctx, keep); err != nil {
			return nil, "", "", err
		}
		if err := svc.Store.SetClientCredentials(ctx, keep.ID, secret.Hash(id), hint, secret.Hash(sec), now); err != nil {
			return nil, "", "", err
		}
		keep.ClientIDHash, keep.ClientIDHint, keep.SecretHash = secret.Hash(id), hint, secret.Hash(sec)
	}
	svc.Audit(ctx, store.AuditEvent{Actor: "admin", Action: "client.create", Target: keep.ID, Outcome: "ok", Detail: "serve --demo (new credentials for " + spec.Name + ")"})
	if svc.Events != nil {
		_ = svc.Events.Publish(ctx, events.TopicClientChanged, []byte(`{"id":"`+keep.ID+`"}`))
	}
	return keep, id, sec, nil
}

// DemoAudience is the audience of the demo's client_credentials client; the demo's gateway route
// to the example upstream accepts its tokens.
const DemoAudience = "https://api.posgate.demo"

// DemoScope is the scope the demo client is granted and the demo route requires.
const DemoScope = "read"

// Demo seeds a client_credentials client and prints how to get a token (kept in $POSGATE_TOKEN for
// the later lines) and introspect it.
func (s *Server) Demo(ctx context.Context, baseURL string) ([]string, error) {
	c, id, sec, err := DemoClient(ctx, s.svc, store.Client{Name: "posgate-demo", GrantTypes: []string{GrantClientCredentials},
		Scopes: []string{DemoScope}, Audiences: []string{DemoAudience}}, nil)
	if err != nil {
		return nil, fmt.Errorf("oauth demo: %w", err)
	}
	base := strings.TrimSuffix(baseURL, "/")
	return []string{
		fmt.Sprintf("# client %s: client_id %s, client_secret %s (client_credentials, audience %s, scope %s)", c.ID, id, sec, DemoAudience, DemoScope),
		fmt.Sprintf("POSGATE_TOKEN=$(%s %s/oauth/token -u '%s:%s' -d grant_type=client_credentials -d audience=%s -d scope=%s | jq -r .access_token)",
			DemoCurl, base, id, sec, DemoAudience, DemoScope),
		fmt.Sprintf("%s %s/oauth/introspect -u '%s:%s' --data-urlencode \"token=$POSGATE_TOKEN\"; echo", DemoCurl, base, id, sec),
	}, nil
}

// DemoHS256Shell is a POSIX shell snippet (openssl and coreutils only) that prints an HS256 JWT
// whose payload is printed by the shell command payload and whose key is the shell word key
// (e.g. "$KEY"). The demo lines sign at paste time, so a timestamp in the payload is fresh
// however long after the start they are run.
func DemoHS256Shell(payload, key string) string {
	return `b64() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }; ` +
		`h=$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | b64); ` +
		`p=$(` + payload + ` | b64); ` +
		`s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -hmac ` + key + ` -binary | b64); ` +
		`printf '%s.%s.%s\n' "$h" "$p" "$s"`
}
