package oauth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/sqlite"
	"github.com/posgate/posgate/internal/token"
)

// refreshCounter counts the refresh grant's store calls.
type refreshCounter struct {
	store.Store
	mu          sync.Mutex
	reads, uses int
}

func (c *refreshCounter) GetRefreshToken(ctx context.Context, h []byte) (*store.RefreshToken, *store.RefreshFamily, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.Store.GetRefreshToken(ctx, h)
}

func (c *refreshCounter) UseRefreshToken(ctx context.Context, u *store.RefreshUse) (*store.RefreshUsed, error) {
	c.mu.Lock()
	c.uses++
	c.mu.Unlock()
	return c.Store.UseRefreshToken(ctx, u)
}

func (c *refreshCounter) calls() (reads, uses int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, u := c.reads, c.uses
	c.reads, c.uses = 0, 0
	return r, u
}

type noTokens struct{}

func (noTokens) Verify(context.Context, string, token.VerifyOptions) (*token.Claims, error) {
	return nil, errors.New("not used")
}

func (noTokens) Issue(context.Context, token.Claims, time.Duration) (string, *token.Claims, error) {
	return "", nil, errors.New("not used")
}

type recordingRevoker struct {
	mu  sync.Mutex
	got []string
}

func (r *recordingRevoker) Revoke(_ context.Context, kind, value string, _ time.Time, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, kind+":"+value)
	return nil
}

// TestRotateIsOneStoreCall: a refresh that rotates costs the store one call (read, checks and
// rotation in one write); a refused request rotates nothing and is told apart from the rows that
// call returned; a replay revokes the family.
func TestRotateIsOneStoreCall(t *testing.T) {
	ctx := context.Background()
	base, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rotate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { base.Close() })
	st := &refreshCounter{Store: base}
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	rev := &recordingRevoker{}
	cfg := config.Default()
	cfg.Chimpy.RefreshGrace = 0
	s, err := NewServer(&app.Services{Store: st, Clock: clk, Config: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Issuer: noTokens{}, Verifier: noTokens{}, Revoker: rev})
	if err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	if err := st.CreateUser(ctx, &store.User{ID: "us_1", Username: "ann", PasswordHash: "x", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	c := &store.Client{ID: "cl_1"}
	value, fam, err := s.newFamily(ctx, c, "us_1", "https://api.example", []string{"rentals", "offline_access"}, now)
	if err != nil {
		t.Fatal(err)
	}
	st.calls()

	clk.Advance(time.Second)
	// Refused before anything changes: a scope the session lacks, another audience, another client.
	for name, try := range map[string]func() error{
		"scope": func() error {
			_, err := s.rotate(ctx, c, value, "", clk.Now(), refreshWant{scope: []string{"admin"}})
			return err
		},
		"audience": func() error {
			_, err := s.rotate(ctx, c, value, "", clk.Now(), refreshWant{audience: "https://other.example"})
			return err
		},
		"client": func() error {
			_, err := s.rotate(ctx, &store.Client{ID: "cl_2"}, value, "", clk.Now(), refreshWant{})
			return err
		},
	} {
		if err := try(); err == nil {
			t.Fatalf("%s: rotated", name)
		}
		if reads, uses := st.calls(); reads != 0 || uses != 1 {
			t.Fatalf("%s: %d reads and %d uses; want 0 and 1", name, reads, uses)
		}
	}

	rot, err := s.rotate(ctx, c, value, "", clk.Now(), refreshWant{audience: "https://api.example", scope: []string{"rentals"}})
	if err != nil {
		t.Fatal(err)
	}
	if reads, uses := st.calls(); reads != 0 || uses != 1 {
		t.Fatalf("rotation: %d reads and %d uses; want 0 and 1", reads, uses)
	}
	if rot.fam.ID != fam.ID || rot.value == value || !wellFormedRefreshToken(rot.value) {
		t.Fatalf("rotation answered %+v", rot)
	}

	// The rotated token again: reuse, the family revoked (store and sid).
	if _, err := s.rotate(ctx, c, value, "", clk.Now(), refreshWant{}); err == nil {
		t.Fatal("replay accepted")
	}
	got, err := st.GetRefreshFamily(ctx, fam.ID)
	if err != nil || got.RevokedAt == nil {
		t.Fatalf("family after replay: %+v %v", got, err)
	}
	if len(rev.got) != 1 || rev.got[0] != "sid:"+fam.ID {
		t.Fatalf("revocations %v", rev.got)
	}
	if _, err := s.rotate(ctx, c, rot.value, "", clk.Now(), refreshWant{}); err == nil {
		t.Fatal("successor of a revoked family accepted")
	}
}
