package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/events/pgbus"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/postgres"
	"github.com/posgate/posgate/internal/store/sqlstore"
)

func openPostgres(ctx context.Context, cfg *config.Config, log *slog.Logger) (store.Store, events.Bus, error) {
	st, err := postgres.Open(ctx, cfg.Store.DSN, sqlstore.WithTimeout(config.Seconds(cfg.Store.Timeout)))
	if err != nil {
		if strings.Contains(err.Error(), "(SQLSTATE 3D000)") { // invalid_catalog_name
			return nil, nil, fmt.Errorf("store (postgres): %w; posgate creates its tables but not the database: create it first (createdb, or CREATE DATABASE in psql)", err)
		}
		return nil, nil, fmt.Errorf("store (postgres): %w", err)
	}
	bus, err := pgbus.New(ctx, cfg.Store.DSN, log)
	if err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("event bus (postgres): %w", err)
	}
	return st, bus, nil
}
