package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/storetest"
)

func BenchmarkOutbox(b *testing.B) {
	storetest.BenchOutbox(b, func(b *testing.B) store.Store {
		s, err := Open(b.Context(), filepath.Join(b.TempDir(), "posgate.db"))
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
}
