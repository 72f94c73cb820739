package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/sqlite"
	"github.com/posgate/posgate/internal/store/sqlstore"
)

// storeOpener opens a store and the event bus that goes with it: in-process for SQLite (one
// process owns the file), LISTEN/NOTIFY for PostgreSQL (replicas share the database).
type storeOpener func(ctx context.Context, cfg *config.Config, log *slog.Logger) (store.Store, events.Bus, error)

// storeDriver returns the opener of a store.driver value.
func storeDriver(name string) (storeOpener, bool) {
	switch name {
	case "sqlite":
		return openSQLite, true
	case "postgres":
		return openPostgres, true
	}
	return nil, false
}

func openSQLite(ctx context.Context, cfg *config.Config, _ *slog.Logger) (store.Store, events.Bus, error) {
	if err := os.MkdirAll(filepath.Dir(cfg.Store.Path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("store.path %s: %w", cfg.Store.Path, err)
	}
	st, err := sqlite.Open(ctx, cfg.Store.Path, sqlstore.WithTimeout(config.Seconds(cfg.Store.Timeout)))
	if err != nil {
		return nil, nil, fmt.Errorf("store (sqlite %s): %w", cfg.Store.Path, err)
	}
	return st, events.NewLocal(), nil
}
