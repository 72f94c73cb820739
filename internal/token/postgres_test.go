package token

import (
	"context"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/events/pgbus"
	"github.com/posgate/posgate/internal/keys"
	"github.com/posgate/posgate/internal/store/pgtest"
	"github.com/posgate/posgate/internal/store/postgres"
)

// pgReplica is a replica on the shared PostgreSQL database dsn with its own pool and its own
// LISTEN/NOTIFY bus, as a separate process would have.
func pgReplica(t *testing.T, dsn string, clk *clock.Fake) *env {
	t.Helper()
	st, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bus, err := pgbus.New(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	return newReplicaOn(t, st, clk, bus, keys.AlgEdDSA)
}

// The multi-replica path for real: two replicas on one PostgreSQL database, each with its own
// store pool and NOTIFY bus. A revocation on one is refused by the other as soon as the notice
// arrives — well before any resync (the resync loop runs every 5 s; we allow 4 s) — and keys
// created by one are used by both.
func TestPostgresRevocationAcrossReplicas(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	clk := clock.NewFake(t0)
	a := pgReplica(t, dsn, clk)
	b := pgReplica(t, dsn, clk)
	if a.activeKID(t) != b.activeKID(t) {
		t.Fatalf("replicas sign with different keys: %s vs %s", a.activeKID(t), b.activeKID(t))
	}
	raw, c := a.issue(t, Claims{Subject: "s", SessionID: "fam-pg"}, time.Hour)
	if _, err := b.v.Verify(ctx, raw, VerifyOptions{}); err != nil { // cached on b now
		t.Fatal(err)
	}
	if err := a.v.Revoke(ctx, RevokeSID, c.SessionID, c.ExpiresAt, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.v.Verify(ctx, raw, VerifyOptions{}); err == nil {
		t.Fatal("revoking replica still accepts the token")
	}
	deadline := time.Now().Add(4 * time.Second)
	for {
		_, err := b.v.Verify(ctx, raw, VerifyOptions{})
		if err != nil {
			wantReason(t, err, ReasonRevoked)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the other replica did not hear of the revocation within 4 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Rotation on one replica; the other refreshes and signs with the same key, and each verifies
	// the other's tokens throughout.
	before, _ := b.issue(t, Claims{Subject: "s"}, time.Hour)
	if err := a.kr.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	stale, _ := b.issue(t, Claims{Subject: "s"}, time.Hour)
	fresh, _ := a.issue(t, Claims{Subject: "s"}, time.Hour)
	for _, tok := range []string{before, stale, fresh} {
		for _, r := range []*env{a, b} {
			if _, err := r.v.Verify(ctx, tok, VerifyOptions{}); err != nil {
				t.Fatalf("across a rotation: %v", err)
			}
		}
	}
	if err := b.kr.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if a.activeKID(t) != b.activeKID(t) {
		t.Fatal("replicas disagree after refresh")
	}
}
