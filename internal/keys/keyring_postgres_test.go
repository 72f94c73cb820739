package keys

import (
	"context"
	"testing"

	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/pgtest"
	"github.com/posgate/posgate/internal/store/postgres"
)

// The keyring tests also run against PostgreSQL (skipped locally when it is unreachable, a
// failure under CI=true); each replica has its own connection pool.
func init() {
	keyStores["postgres"] = func(t *testing.T) func() store.SigningKeys {
		dsn := pgtest.NewDatabase(t)
		return func() store.SigningKeys {
			st, err := postgres.Open(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}
	}
}
