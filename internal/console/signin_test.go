package console_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/store"
)

// sessionRow reports whether the store still holds the session of cookie value v.
func sessionRow(t *testing.T, inst *servertest.Instance, v string) bool {
	t.Helper()
	_, err := inst.Svc.Store.GetConsoleSession(context.Background(), secret.Hash(v), time.Now())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// TestSignInAgainEndsThePreviousSession: a browser that signs in again while it holds a session
// gets a new session id, and the old one is ended in the store, so a copy of the old cookie (a
// fixed or leaked id) signs nobody in. Sign-out deletes the store row, not only the cookie.
func TestSignInAgainEndsThePreviousSession(t *testing.T) {
	tok := secret.Generate(secret.PrefixAdminToken)
	inst := servertest.Start(t, servertest.Options{AdminToken: tok})
	first := signInAt(t, browserish(t), inst.URL, tok)
	if !sessionRow(t, inst, first) {
		t.Fatal("sign-in stored no session")
	}
	second := signInAt(t, withCookie(t, first, inst.URL), inst.URL, tok)
	if second == first {
		t.Fatal("signing in again kept the session id")
	}
	if sessionRow(t, inst, first) {
		t.Error("signing in again left the previous session in the store")
	}
	if signedIn(t, withCookie(t, first, inst.URL), inst.URL) {
		t.Error("a copy of the previous cookie is still signed in")
	}
	c := withCookie(t, second, inst.URL)
	if !signedIn(t, c, inst.URL) {
		t.Fatal("the new session does not work")
	}

	// A failed sign-in does not end the session the browser holds.
	if resp, _ := do(t, c, http.MethodPost, inst.URL+"/admin/login", "token=pg_at_wrong"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", resp.StatusCode)
	}
	if !sessionRow(t, inst, second) {
		t.Error("a failed sign-in ended the session")
	}

	if resp, _ := do(t, c, http.MethodPost, inst.URL+"/admin/logout", ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if sessionRow(t, inst, second) {
		t.Error("sign-out left the session in the store")
	}
	if signedIn(t, withCookie(t, second, inst.URL), inst.URL) {
		t.Error("a copy of the cookie is still signed in after sign-out")
	}

	// A cookie that names no session (a made-up id) does not stop a sign-in.
	if v := signInAt(t, withCookie(t, "A123456789012345678901234567890123456789012", inst.URL), inst.URL, tok); !sessionRow(t, inst, v) {
		t.Error("sign-in with an unknown cookie stored no session")
	}
}
