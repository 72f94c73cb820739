package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/pgtest"
	"github.com/posgate/posgate/internal/store/postgres"
	"github.com/posgate/posgate/internal/store/sqlite"
)

// The outbox's housekeeping: an open message past its lifetime becomes expired, and finished
// messages are deleted once hub.outbox_retention has passed since they finished — not before,
// and never an open one.
func TestOutboxHousekeepingSQLite(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "posgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	testOutboxHousekeeping(t, st)
}

func TestOutboxHousekeepingPostgres(t *testing.T) {
	st, err := postgres.Open(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	testOutboxHousekeeping(t, st)
}

func testOutboxHousekeeping(t *testing.T, st store.Store) {
	ctx := context.Background()
	ob := st.(store.Outbox)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	cfg := config.Default()
	cfg.Hub.OutboxRetention = 7200
	mod, err := newOutboxHousekeeping(&app.Services{Config: cfg, Clock: clk, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	tasks := map[string]app.Task{}
	for _, tk := range mod.(app.Maintainer).Maintenance() {
		tasks[tk.Name] = tk
	}
	expiry, cleanup := tasks["outbox expiry"], tasks["outbox finished messages"]
	if expiry.Run == nil || cleanup.Run == nil || cleanup.Every != app.CleanupEvery {
		t.Fatalf("tasks = %+v", tasks)
	}
	put := func(id string, ttl time.Duration) {
		sum := sha256.Sum256([]byte(id))
		if _, _, err := ob.EnqueueOutbox(ctx, &store.OutboxMessage{Queue: "q", ID: id, BodyHash: sum[:],
			Payload: []byte(id), CreatedAt: clk.Now(), ExpiresAt: clk.Now().Add(ttl)}); err != nil {
			t.Fatal(err)
		}
	}
	put("answered", time.Hour)
	put("expires", time.Minute)
	put("open", 10*time.Hour)
	if err := ob.CompleteOutbox(ctx, "q", "answered", []byte(`{}`), t0); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute)
	if err := expiry.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err := ob.GetOutbox(ctx, "q", "expires"); err != nil || m.State != store.OutboxExpired {
		t.Fatalf("after the expiry task: %+v, %v", m, err)
	}
	// An hour later both finished messages are still within the retention.
	clk.Advance(time.Hour)
	if err := cleanup.Run(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"answered", "expires", "open"} {
		if _, err := ob.GetOutbox(ctx, "q", id); err != nil {
			t.Fatalf("%s within the retention: %v", id, err)
		}
	}
	// Past two hours since "answered" finished, but not yet since "expires" did.
	clk.Set(t0.Add(2*time.Hour + time.Minute))
	if err := cleanup.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ob.GetOutbox(ctx, "q", "answered"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("answered past the retention: %v", err)
	}
	if _, err := ob.GetOutbox(ctx, "q", "expires"); err != nil {
		t.Fatalf("expired within the retention: %v", err)
	}
	clk.Advance(2 * time.Hour)
	if err := cleanup.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ob.GetOutbox(ctx, "q", "expires"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired past the retention: %v", err)
	}
	// Open, and past the retention since it was created: kept (only finished ones go).
	if m, err := ob.GetOutbox(ctx, "q", "open"); err != nil || m.State != store.OutboxQueued {
		t.Fatalf("open message: %+v, %v", m, err)
	}
}

// The server schedules the outbox housekeeping (through the module contract).
func TestServerSchedulesOutboxHousekeeping(t *testing.T) {
	srv, err := New(context.Background(), Options{Config: testConfig(t, t.TempDir()), Log: NewLogger(io.Discard, "info"),
		Out: io.Discard, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	names := map[string]time.Duration{}
	for _, tk := range srv.tasks() {
		names[tk.Name] = tk.Every
	}
	if names["outbox expiry"] != outboxExpiryEvery || names["outbox finished messages"] != app.CleanupEvery {
		t.Fatalf("tasks %v", names)
	}
}
