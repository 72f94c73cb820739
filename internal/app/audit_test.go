package app_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/sqlite"
)

// An audit event the store cannot take (here a closed store, which fails every write with
// ErrUnavailable, as a full disk or a hung database does) is logged whole at error level, so it
// survives even with log_level: warn, where the informational "audit" line is dropped.
func TestAuditNotStoredIsLogged(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	var buf bytes.Buffer
	svc := &app.Services{Store: st, Clock: clock.NewFake(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)),
		Log: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	svc.Audit(t.Context(), store.AuditEvent{Actor: "anonymous", Action: "oauth.client_auth", Target: "cl_123",
		Address: "192.0.2.7", Outcome: "denied", Detail: "wrong client secret"})
	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &line); err != nil {
		t.Fatalf("want one JSON log line, got %q: %v", buf.String(), err)
	}
	for k, want := range map[string]string{"level": "ERROR", "actor": "anonymous", "action": "oauth.client_auth", "target": "cl_123",
		"address": "192.0.2.7", "outcome": "denied", "detail": "wrong client secret", "at": "2026-03-02T10:00:00Z"} {
		if line[k] != want {
			t.Errorf("log %s = %v, want %q (line %s)", k, line[k], want, buf.String())
		}
	}
}
