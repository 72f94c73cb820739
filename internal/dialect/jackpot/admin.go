package jackpot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// AssertionSecretPrefix marks a jackpot API signature so secret scanners can find a leaked one.
const AssertionSecretPrefix = secret.PrefixAssertionSecret

// rotateResponse is the answer of POST /clients/{id}/rotate-assertion-secret. The secret is shown
// this once; the previous ones keep verifying until previous_valid_until.
type rotateResponse struct {
	ClientID           string    `json:"id"`
	KeyID              string    `json:"key_id"`
	AssertionSecret    string    `json:"assertion_secret"`
	PreviousValidUntil time.Time `json:"previous_valid_until"`
}

// rotateAssertionSecret serves POST /admin/api/v1/clients/{id}/rotate-assertion-secret.
func (m *Module) rotateAssertionSecret(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	addr := auth.Addr(r)
	resp, status, code, desc := m.rotate(ctx, id)
	if status != http.StatusOK {
		m.svc.Audit(ctx, store.AuditEvent{Actor: "admin", Action: "client.rotate_assertion_secret", Target: id,
			Address: addr, Outcome: outcomeOf(status), Detail: code})
		httpx.NoStore(w)
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
		httpx.WriteError(w, status, code, desc)
		return
	}
	m.svc.Audit(ctx, store.AuditEvent{Actor: "admin", Action: "client.rotate_assertion_secret", Target: id,
		Address: addr, Outcome: "ok", Detail: "key " + resp.KeyID + "; previous keys verify until " + resp.PreviousValidUntil.UTC().Format(time.RFC3339)})
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusOK, resp)
}

func outcomeOf(status int) string {
	if status >= 500 {
		return "error"
	}
	return "denied"
}

func (m *Module) rotate(ctx context.Context, id string) (*rotateResponse, int, string, string) {
	cl, err := m.svc.Store.GetClient(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, http.StatusNotFound, "not_found", "no client with that id"
	case err != nil:
		m.logStoreError(ctx, "client read", err)
		return nil, http.StatusServiceUnavailable, "unavailable", "the store is unavailable; retry later"
	case !cl.APIKey:
		return nil, http.StatusConflict, "not_a_jackpot_client", "the client has no API key; API signatures belong to jackpot clients"
	}
	now := m.svc.Clock.Now()
	key, plain, err := NewAssertionKey(m.svc.Sealer, cl.ID, now)
	if err != nil {
		m.svc.Log.LogAttrs(ctx, slog.LevelError, "jackpot: sealing an API signature failed", slog.String("client", cl.ID), slog.String("error", err.Error()))
		return nil, http.StatusInternalServerError, "internal", "internal error"
	}
	overlapEnd := now.Add(m.cfg.keyOverlap)
	if err := m.svc.Store.AddAssertionKey(ctx, cl.ID, key, overlapEnd); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, http.StatusNotFound, "not_found", "no client with that id"
		}
		m.logStoreError(ctx, "add assertion key", err)
		return nil, http.StatusServiceUnavailable, "unavailable", "the store is unavailable; retry later"
	}
	m.clients.forget(cl)
	m.announceClientChanged(ctx, cl.ID)
	return &rotateResponse{ClientID: cl.ID, KeyID: key.ID, AssertionSecret: plain, PreviousValidUntil: overlapEnd.UTC()}, http.StatusOK, "", ""
}

// NewAssertionKey generates an API signature for client clientID: the clear value (shown once,
// `pg_as_` + 256 random bits) and the store record holding it sealed under the master key with
// the additional data AssertionKeyAD(clientID, key id).
func NewAssertionKey(s interface {
	Seal(plaintext, additionalData []byte) ([]byte, error)
}, clientID string, now time.Time) (store.AssertionKey, string, error) {
	plain := secret.Generate(AssertionSecretPrefix)
	kid := secret.NewID("ak_")
	sealed, err := s.Seal([]byte(plain), AssertionKeyAD(clientID, kid))
	if err != nil {
		return store.AssertionKey{}, "", fmt.Errorf("seal API signature: %w", err)
	}
	return store.AssertionKey{ID: kid, Sealed: sealed, CreatedAt: now}, plain, nil
}

// announceClientChanged tells every replica that client id changed (best effort: caches also
// expire on their own).
func (m *Module) announceClientChanged(ctx context.Context, id string) {
	if m.svc.Events == nil {
		return
	}
	payload, _ := json.Marshal(map[string]string{"id": id})
	if err := m.svc.Events.Publish(ctx, events.TopicClientChanged, payload); err != nil {
		m.svc.Log.LogAttrs(ctx, slog.LevelWarn, "jackpot: announcing a client change failed", slog.String("client", id), slog.String("error", err.Error()))
	}
}
