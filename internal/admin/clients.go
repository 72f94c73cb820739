package admin

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// Grant types a client may be given.
const (
	GrantClientCredentials = "client_credentials"
	GrantPassword          = "password"
	GrantRefreshToken      = "refresh_token"
	GrantJWTBearer         = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

// KnownGrantTypes are the grant types posgate implements.
var KnownGrantTypes = []string{GrantClientCredentials, GrantPassword, GrantRefreshToken, GrantJWTBearer}

// Field limits of a client.
const (
	maxNameLen     = 100
	maxScopes      = 100
	maxAudiences   = 50
	maxScopeLen    = 128
	maxAudienceLen = 256
)

// CreateClientRequest is the body of POST /clients.
type CreateClientRequest struct {
	Name            string   `json:"name"`
	GrantTypes      []string `json:"grant_types"`
	Scopes          []string `json:"scopes"`
	Audiences       []string `json:"audiences"`
	APIKey          bool     `json:"apikey"`
	AssertionSecret bool     `json:"assertion_secret"`
}

// CreateClientResponse is the answer: the secrets appear here and nowhere else, ever.
type CreateClientResponse struct {
	ID              string   `json:"id"`
	ClientID        string   `json:"client_id"`
	ClientSecret    string   `json:"client_secret"`
	AssertionSecret string   `json:"assertion_secret,omitempty"`
	AssertionKeyID  string   `json:"assertion_key_id,omitempty"`
	Name            string   `json:"name"`
	GrantTypes      []string `json:"grant_types"`
	Scopes          []string `json:"scopes"`
	Audiences       []string `json:"audiences"`
	APIKey          bool     `json:"apikey"`
}

// decodeStrict decodes one JSON object with no duplicate and no unknown keys.
func decodeStrict(data []byte, v any) error {
	if err := httpx.DecodeJSON(data, v, true); err != nil {
		e, _ := errs.As(err)
		return errs.Wrap(errs.BadInput, "invalid_request", e.Message, err)
	}
	return nil
}

// ParseCreateClient decodes and validates a POST /clients body; an audience in reserved is
// refused. Every refusal names the field.
func ParseCreateClient(data []byte, reserved app.Audiences) (*CreateClientRequest, error) {
	var req CreateClientRequest
	if err := decodeStrict(data, &req); err != nil {
		return nil, err
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" {
		return nil, badInput("name: required")
	}
	if utf8.RuneCountInString(req.Name) > maxNameLen || !printable(req.Name) {
		return nil, badInput("name: at most %d printable characters", maxNameLen)
	}
	if len(req.GrantTypes) == 0 {
		return nil, badInput("grant_types: at least one of %s", strings.Join(KnownGrantTypes, ", "))
	}
	for i, g := range req.GrantTypes {
		if !slices.Contains(KnownGrantTypes, g) {
			return nil, badInput("grant_types[%d]: %q is not allowed (%s)", i, truncate(g, 64), strings.Join(KnownGrantTypes, ", "))
		}
		if slices.Contains(req.GrantTypes[:i], g) {
			return nil, badInput("grant_types[%d]: %q is repeated", i, g)
		}
	}
	if len(req.Scopes) > maxScopes {
		return nil, badInput("scopes: at most %d", maxScopes)
	}
	for i, s := range req.Scopes {
		if !isScopeToken(s) || len(s) > maxScopeLen {
			return nil, badInput("scopes[%d]: %q is not a scope (RFC 6749 scope-token: printable ASCII without space, \" or \\, up to %d)", i, truncate(s, 64), maxScopeLen)
		}
		if slices.Contains(req.Scopes[:i], s) {
			return nil, badInput("scopes[%d]: %q is repeated", i, s)
		}
	}
	if len(req.Audiences) > maxAudiences {
		return nil, badInput("audiences: at most %d", maxAudiences)
	}
	for i, au := range req.Audiences {
		if au == "" || len(au) > maxAudienceLen || !isScopeToken(au) {
			return nil, badInput("audiences[%d]: %q is not allowed (printable ASCII without space, up to %d)", i, truncate(au, 64), maxAudienceLen)
		}
		if slices.Contains(req.Audiences[:i], au) {
			return nil, badInput("audiences[%d]: %q is repeated", i, au)
		}
		if reserved.Has(au) {
			// Tokens for these are minted only by their dialect's own endpoint (its client
			// authentication, throttle and lifetime); a client listing one could mint them at
			// /oauth/token instead.
			return nil, badInput("audiences[%d]: %q is reserved for its dialect's own tokens (reserved: %s)", i, au, strings.Join(reserved, ", "))
		}
	}
	if req.AssertionSecret && !req.APIKey {
		return nil, badInput("assertion_secret: API signatures belong to jackpot clients; set apikey: true as well")
	}
	if req.Scopes == nil {
		req.Scopes = []string{}
	}
	if req.Audiences == nil {
		req.Audiences = []string{}
	}
	return &req, nil
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// isScopeToken: RFC 6749 §3.3 scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func isScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}

// APIKeyHint is the displayable form of an API key: its prefix and last 4 characters.
func APIKeyHint(key string) string {
	if len(key) <= len(secret.PrefixClientID)+4 {
		return secret.PrefixClientID + "…"
	}
	return secret.PrefixClientID + "…" + key[len(key)-4:]
}

func (a *API) createClient(w http.ResponseWriter, r *http.Request) {
	const action = "client.create"
	var req *CreateClientRequest
	data, err := httpx.ReadBody(r, MaxBody)
	if err == nil && !httpx.IsJSON(r) {
		err = errs.New(errs.BadInput, "invalid_request", "Content-Type must be application/json")
	}
	if err == nil {
		req, err = ParseCreateClient(data, a.svc.Reserved)
	}
	if err != nil {
		a.fail(w, r, action, "", err)
		return
	}
	now := a.svc.Clock.Now()
	clientID := secret.Generate(secret.PrefixClientID)
	clientSecret := secret.Generate(secret.PrefixClientSecret)
	c := &store.Client{
		ID:           secret.NewID("cl_"),
		Name:         req.Name,
		ClientIDHash: secret.Hash(clientID),
		ClientIDHint: clientID,
		SecretHash:   secret.Hash(clientSecret),
		GrantTypes:   req.GrantTypes,
		Scopes:       req.Scopes,
		Audiences:    req.Audiences,
		APIKey:       req.APIKey,
		CreatedAt:    now,
		UpdatedAt:    now,
	}
	if req.APIKey {
		// The API key is a credential on its own (the apikey header): show only a hint of it.
		c.ClientIDHint = APIKeyHint(clientID)
	}
	resp := &CreateClientResponse{ID: c.ID, ClientID: clientID, ClientSecret: clientSecret, Name: c.Name,
		GrantTypes: c.GrantTypes, Scopes: c.Scopes, Audiences: c.Audiences, APIKey: c.APIKey}
	if req.AssertionSecret {
		plain := secret.Generate(secret.PrefixAssertionSecret)
		kid := secret.NewID("ak_")
		sealed, err := a.svc.Sealer.Seal([]byte(plain), []byte("assertion-key:"+c.ID+":"+kid))
		if err != nil {
			a.fail(w, r, action, c.ID, errs.Wrap(errs.Internal, "seal", "sealing failed", err))
			return
		}
		c.AssertionKeys = []store.AssertionKey{{ID: kid, Sealed: sealed, CreatedAt: now}}
		resp.AssertionSecret, resp.AssertionKeyID = plain, kid
	}
	if err := a.svc.Store.CreateClient(r.Context(), c); err != nil {
		a.fail(w, r, action, c.ID, err)
		return
	}
	a.audit(r, action, c.ID, "ok", "name "+truncate(c.Name, 64)+"; grants "+strings.Join(c.GrantTypes, " "))
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusCreated, resp)
}

// ClientJSON is a client as the admin API shows it: never a hash or a sealed blob.
type ClientJSON struct {
	ID            string             `json:"id"`
	Name          string             `json:"name"`
	ClientIDHint  string             `json:"client_id_hint"`
	GrantTypes    []string           `json:"grant_types"`
	Scopes        []string           `json:"scopes"`
	Audiences     []string           `json:"audiences"`
	APIKey        bool               `json:"apikey"`
	Disabled      bool               `json:"disabled"`
	CreatedAt     time.Time          `json:"created_at"`
	UpdatedAt     time.Time          `json:"updated_at"`
	AssertionKeys []AssertionKeyJSON `json:"assertion_keys,omitempty"`
}

// AssertionKeyJSON describes an API signature without its value.
type AssertionKeyJSON struct {
	ID        string     `json:"id"`
	CreatedAt time.Time  `json:"created_at"`
	NotAfter  *time.Time `json:"not_after,omitempty"`
}

func clientJSON(c *store.Client) ClientJSON {
	out := ClientJSON{ID: c.ID, Name: c.Name, ClientIDHint: c.ClientIDHint, GrantTypes: nonNil(c.GrantTypes),
		Scopes: nonNil(c.Scopes), Audiences: nonNil(c.Audiences), APIKey: c.APIKey, Disabled: c.Disabled,
		CreatedAt: c.CreatedAt.UTC(), UpdatedAt: c.UpdatedAt.UTC()}
	for _, k := range c.AssertionKeys {
		out.AssertionKeys = append(out.AssertionKeys, AssertionKeyJSON{ID: k.ID, CreatedAt: k.CreatedAt.UTC(), NotAfter: k.NotAfter})
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (a *API) listClients(w http.ResponseWriter, r *http.Request) {
	list, err := a.svc.Store.ListClients(r.Context())
	if err != nil {
		a.fail(w, r, "client.list", "", err)
		return
	}
	out := make([]ClientJSON, 0, len(list))
	for _, c := range list {
		out = append(out, clientJSON(c))
	}
	a.audit(r, "client.list", "", "ok", "")
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"clients": out})
}

func (a *API) getClient(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c, err := a.svc.Store.GetClient(r.Context(), id)
	if err != nil {
		a.fail(w, r, "client.get", truncate(id, 64), err)
		return
	}
	a.audit(r, "client.get", c.ID, "ok", "")
	httpx.WriteJSON(w, http.StatusOK, clientJSON(c))
}

func (a *API) disableClient(w http.ResponseWriter, r *http.Request) {
	const action = "client.disable"
	id := r.PathValue("id")
	c, err := a.svc.Store.GetClient(r.Context(), id)
	if err != nil {
		a.fail(w, r, action, truncate(id, 64), err)
		return
	}
	if !c.Disabled {
		c.Disabled = true
		c.UpdatedAt = a.svc.Clock.Now()
		if err := a.svc.Store.UpdateClient(r.Context(), c); err != nil {
			a.fail(w, r, action, c.ID, err)
			return
		}
	}
	// Every replica's client caches (token endpoint, jackpot API keys) drop the client at once
	// instead of waiting for their TTL; a lost notice still ends at the TTL.
	a.announceClientChanged(r, c.ID)
	a.audit(r, action, c.ID, "ok", "")
	httpx.WriteJSON(w, http.StatusOK, clientJSON(c))
}

func (a *API) announceClientChanged(r *http.Request, id string) {
	payload, _ := json.Marshal(map[string]string{"id": id})
	if err := a.svc.Events.Publish(r.Context(), events.TopicClientChanged, payload); err != nil {
		a.svc.Log.WarnContext(r.Context(), "client change not announced", "client", id, "error", err.Error())
	}
}
