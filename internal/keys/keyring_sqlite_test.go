package keys

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/sqlite"
)

// The keyring tests also run against the real SQLite store; each replica opens the database
// file on its own, as separate processes would.
func init() {
	keyStores["sqlite"] = func(t *testing.T) func() store.SigningKeys {
		path := filepath.Join(t.TempDir(), "posgate.db")
		return func() store.SigningKeys {
			st, err := sqlite.Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}
	}
}
