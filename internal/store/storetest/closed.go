package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

func testClosed(t *testing.T, s store.Store) {
	ok(t, s.Ping(ctx(t)))
	ok(t, s.CreateUser(ctx(t), &store.User{ID: "us_1", Username: "a", PasswordHash: "x", CreatedAt: base, UpdatedAt: base}))
	ok(t, s.Close())
	ok(t, s.Close()) // idempotent

	checks := map[string]error{
		"Ping":               s.Ping(ctx(t)),
		"UseOnce":            s.UseOnce(ctx(t), "k", base, base.Add(time.Minute)),
		"ReleaseOnce":        s.ReleaseOnce(ctx(t), "k"),
		"CreateUser":         s.CreateUser(ctx(t), &store.User{ID: "us_2", Username: "b", PasswordHash: "x", CreatedAt: base, UpdatedAt: base}),
		"AddRevocation":      s.AddRevocation(ctx(t), store.Revocation{Kind: "jti", Value: "x", RevokedAt: base, ExpiresAt: base.Add(time.Hour)}),
		"RotateRefreshToken": s.RotateRefreshToken(ctx(t), []byte("x"), base, newRefresh("y", base), nil, false),
	}
	_, checks["GetUser"] = s.GetUser(ctx(t), "us_1")
	_, checks["GetClientByIDHash"] = s.GetClientByIDHash(ctx(t), []byte("x"))
	_, checks["GetDoshiiLocationByTokenHash"] = s.GetDoshiiLocationByTokenHash(ctx(t), []byte("x"))
	_, checks["IsRevoked"] = s.IsRevoked(ctx(t), "jti", "x")
	_, checks["IncrCounter"] = s.IncrCounter(ctx(t), "c", base, base.Add(time.Minute))
	_, checks["CountFailure"] = s.CountFailure(ctx(t), []store.CounterIncrement{{Key: "c", WindowStart: base, ExpiresAt: base.Add(time.Minute)}}, nil)
	_, checks["UseOnceChain"] = s.UseOnceChain(ctx(t), []string{"k"}, base, base.Add(time.Minute))
	_, checks["UseOnceAsClient"] = s.UseOnceAsClient(ctx(t), "cl_1", 0, []string{"k"}, base, base.Add(time.Minute))
	_, checks["UseRefreshToken"] = s.UseRefreshToken(ctx(t), &store.RefreshUse{Hash: []byte("h"), At: base, NextHash: []byte("n"), NextIdleExpiresAt: base.Add(time.Hour)})
	_, checks["ListAudit"] = s.ListAudit(ctx(t), 1)
	checks["DeleteAuditBefore"] = s.DeleteAuditBefore(ctx(t), base)
	_, checks["ListSigningKeys"] = s.ListSigningKeys(ctx(t))
	_, checks["Setting"] = s.Setting(ctx(t), store.SettingIssuer)
	_, checks["InitSetting"] = s.InitSetting(ctx(t), store.SettingIssuer, "https://a.example", base)
	_, checks["GetConsoleSession"] = s.GetConsoleSession(ctx(t), []byte("h"), base)
	checks["CreateConsoleSession"] = s.CreateConsoleSession(ctx(t), newConsoleSession("h", base, time.Hour, time.Hour))
	for name, err := range checks {
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s on a closed store: %v, want ErrUnavailable", name, err)
		}
	}
}
