package storetest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// Bench measures the hot paths (one call per request) on a store that open returns fresh:
// UseOnce, GetClientByIDHash, IsRevoked, GetDoshiiLocationByTokenHash, IncrCounter, each run
// with b.RunParallel so concurrent callers are part of the figure.
func Bench(b *testing.B, open func(b *testing.B) store.Store) {
	s := open(b)
	b.Cleanup(func() { _ = s.Close() })
	ctx := b.Context()
	for i := range 1000 {
		c := newClient(i)
		if err := s.CreateClient(ctx, c); err != nil {
			b.Fatal(err)
		}
		if err := s.AddRevocation(ctx, store.Revocation{Kind: "jti", Value: fmt.Sprintf("jti-%d", i), RevokedAt: base, ExpiresAt: base.Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.CreateDoshiiVendor(ctx, &store.DoshiiVendor{ID: "dv_1", APIName: "v", CreatedAt: base}); err != nil {
		b.Fatal(err)
	}
	if err := s.CreateDoshiiOrganisationWithLocation(ctx,
		&store.DoshiiOrganisation{ID: "org_1", VendorID: "dv_1", Name: "o", CreatedAt: base, UpdatedAt: base},
		&store.DoshiiLocation{ID: "loc_1", VendorID: "dv_1", OrganisationID: "org_1", Name: "l", TokenHash: []byte("location token hash"), CreatedAt: base, UpdatedAt: base}); err != nil {
		b.Fatal(err)
	}

	var seq atomic.Int64
	b.Run("UseOnce", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := s.UseOnce(ctx, fmt.Sprintf("bench-%d", seq.Add(1)), base, base.Add(time.Minute)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("GetClientByIDHash", func(b *testing.B) {
		h := newClient(500).ClientIDHash
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.GetClientByIDHash(ctx, h); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("IsRevoked", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.IsRevoked(ctx, "jti", "jti-not-revoked"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("GetDoshiiLocationByTokenHash", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.GetDoshiiLocationByTokenHash(ctx, []byte("location token hash")); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("IncrCounter", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.IncrCounter(ctx, "bench", base, base.Add(time.Minute)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
