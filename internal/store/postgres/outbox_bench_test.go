package postgres

import (
	"testing"

	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/pgtest"
	"github.com/posgate/posgate/internal/store/storetest"
)

func BenchmarkOutbox(b *testing.B) {
	storetest.BenchOutbox(b, func(b *testing.B) store.Store {
		s, err := Open(b.Context(), pgtest.NewDatabase(b))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() }) // before pgtest drops the database
		return s
	})
}
