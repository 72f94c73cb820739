package console_test

import (
	"bufio"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/console"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/store"
)

// signInAt signs c in on the posgate at base with the admin token and returns the cookie value.
func signInAt(t *testing.T, c *http.Client, base, adminToken string) string {
	t.Helper()
	resp, body := do(t, c, http.MethodPost, base+"/admin/login", "token="+url.QueryEscape(adminToken))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/pending" || len(resp.Cookies()) != 1 {
		t.Fatalf("sign in at %s: %d %s", base, resp.StatusCode, body)
	}
	return resp.Cookies()[0].Value
}

// withCookie is a client that sends the session cookie v to every host (a browser behind a load
// balancer sends it to whichever replica answers).
func withCookie(t *testing.T, v string, bases ...string) *http.Client {
	c := browserish(t)
	for _, b := range bases {
		u, _ := url.Parse(b + "/admin/")
		c.Jar.SetCookies(u, []*http.Cookie{{Name: console.CookieName, Value: v, Path: "/admin/"}})
	}
	return c
}

// signedIn reports whether c is signed in on base (the pending page answers 200, not a
// redirect to the sign-in page).
func signedIn(t *testing.T, c *http.Client, base string) bool {
	t.Helper()
	resp, body := do(t, c, http.MethodGet, base+"/admin/pending", "")
	switch {
	case resp.StatusCode == http.StatusOK && strings.Contains(body, "Sign out"):
		return true
	case resp.StatusCode == http.StatusSeeOther && resp.Header.Get("Location") == "/admin/login":
		return false
	}
	t.Fatalf("%s/admin/pending: %d %s", base, resp.StatusCode, body)
	return false
}

// TestSessionOnEveryReplica: a session made on one replica works on the other; a notice left by
// a form post on one is shown once on the other; sign-out on one signs out on both.
func TestSessionOnEveryReplica(t *testing.T) {
	tok := secret.Generate(secret.PrefixAdminToken)
	a := servertest.Start(t, servertest.Options{Driver: "postgres", AdminToken: tok})
	b := servertest.Start(t, servertest.Options{ReplicaOf: a, AdminToken: tok})
	v := signInAt(t, browserish(t), a.URL, tok)
	c := withCookie(t, v, a.URL, b.URL)
	for range 3 {
		for _, base := range []string{a.URL, b.URL} {
			if !signedIn(t, c, base) {
				t.Fatalf("signed out on %s", base)
			}
		}
	}
	// A plain form post on a (no script) leaves the outcome for the next page, served by b.
	resp, _ := do(t, c, http.MethodPost, a.URL+"/admin/devices/dev_nope/approve", "x=1")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("decide: %d", resp.StatusCode)
	}
	_, body := do(t, c, http.MethodGet, b.URL+"/admin/pending", "")
	if !strings.Contains(body, "Not done:") {
		t.Fatalf("b does not show a's notice:\n%s", body)
	}
	if _, body := do(t, c, http.MethodGet, a.URL+"/admin/pending", ""); strings.Contains(body, "Not done:") {
		t.Fatal("the notice was shown twice")
	}

	if resp, _ := do(t, c, http.MethodPost, b.URL+"/admin/logout", ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout on b: %d", resp.StatusCode)
	}
	stale := withCookie(t, v, a.URL, b.URL) // a copy of the cookie the logout cleared
	for _, base := range []string{a.URL, b.URL} {
		if signedIn(t, stale, base) {
			t.Fatalf("still signed in on %s after signing out on b", base)
		}
	}
}

// TestSessionSurvivesRestart on both stores; a restart with another admin token signs everyone
// out (and deletes the session).
func TestSessionSurvivesRestart(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			tok := secret.Generate(secret.PrefixAdminToken)
			first := servertest.Start(t, servertest.Options{Driver: driver, AdminToken: tok})
			v := signInAt(t, browserish(t), first.URL, tok)
			first.Stop()
			opts := servertest.Options{DataDir: first.DataDir, AdminToken: tok}
			if driver == "postgres" {
				opts.DSN = first.Config.Store.DSN
			}
			second := servertest.Start(t, opts)
			if !signedIn(t, withCookie(t, v, second.URL), second.URL) {
				t.Fatal("signed out by a restart")
			}
			second.Stop()

			opts.AdminToken = secret.Generate(secret.PrefixAdminToken)
			third := servertest.Start(t, opts)
			if signedIn(t, withCookie(t, v, third.URL), third.URL) {
				t.Fatal("a session of the former admin token still works")
			}
			if _, err := third.Svc.Store.GetConsoleSession(context.Background(), secret.Hash(v), time.Now()); err == nil {
				t.Error("the session of the former admin token was not deleted")
			}
			signInAt(t, browserish(t), third.URL, opts.AdminToken)
		})
	}
}

// TestSessionExpiry: a session lives while it is used at least every idle period, at most the
// absolute lifetime; an expired one is signed out, and the cleanup task deletes it.
func TestSessionExpiry(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			clk := clock.NewFake(time.Now())
			tok := secret.Generate(secret.PrefixAdminToken)
			inst := servertest.Start(t, servertest.Options{Driver: driver, AdminToken: tok, Clock: clk})

			idle := withCookie(t, signInAt(t, browserish(t), inst.URL, tok), inst.URL)
			busy := withCookie(t, signInAt(t, browserish(t), inst.URL, tok), inst.URL)
			clk.Advance(50 * time.Minute)
			if !signedIn(t, idle, inst.URL) || !signedIn(t, busy, inst.URL) {
				t.Fatal("signed out within the idle period")
			}
			// Used 50 minutes ago; unused for 61 minutes since would idle out without that use.
			clk.Advance(50 * time.Minute)
			if !signedIn(t, busy, inst.URL) {
				t.Fatal("a session in use idled out")
			}
			clk.Advance(11 * time.Minute)
			if signedIn(t, idle, inst.URL) {
				t.Fatal("an idle session outlived its idle period")
			}
			if !signedIn(t, busy, inst.URL) {
				t.Fatal("a session in use idled out")
			}
			// Keep using busy: it ends at the absolute lifetime all the same.
			for elapsed := 111 * time.Minute; elapsed+50*time.Minute < 12*time.Hour; elapsed += 50 * time.Minute {
				clk.Advance(50 * time.Minute)
				if !signedIn(t, busy, inst.URL) {
					t.Fatalf("signed out after %v of use", elapsed+50*time.Minute)
				}
			}
			clk.Advance(50 * time.Minute)
			if signedIn(t, busy, inst.URL) {
				t.Fatal("a session outlived its absolute lifetime")
			}

			// The cleanup task (app.Maintainer, run by the server at start and every period)
			// deletes expired rows; a row the test plants already expired goes at the next start.
			planted := secret.Hash("planted")
			now := clk.Now()
			if err := inst.Svc.Store.CreateConsoleSession(context.Background(), &store.ConsoleSession{Hash: planted, Binding: []byte("b"),
				CreatedAt: now.Add(-2 * time.Hour), SeenAt: now.Add(-2 * time.Hour), IdleExpiresAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			inst.Stop()
			opts := servertest.Options{DataDir: inst.DataDir, AdminToken: tok, Clock: clk}
			if driver == "postgres" {
				opts.DSN = inst.Config.Store.DSN
			}
			again := servertest.Start(t, opts)
			deadline := time.Now().Add(10 * time.Second)
			for {
				// Reads at now do not see the planted row either way; asked about a time before it
				// expired, the store finds it until the task has deleted it.
				if _, err := again.Svc.Store.GetConsoleSession(context.Background(), planted, now.Add(-90*time.Minute)); err != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the cleanup task did not delete an expired session")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestSignOutEndsStreamsOnOtherReplicas: a live-update stream open on one replica ends with a
// signout event as soon as the session is signed out on another (the sign-out notice on the
// shared bus), well before its periodic re-check.
func TestSignOutEndsStreamsOnOtherReplicas(t *testing.T) {
	tok := secret.Generate(secret.PrefixAdminToken)
	a := servertest.Start(t, servertest.Options{Driver: "postgres", AdminToken: tok})
	b := servertest.Start(t, servertest.Options{ReplicaOf: a, AdminToken: tok})
	c := withCookie(t, signInAt(t, browserish(t), a.URL, tok), a.URL, b.URL)
	c.Timeout = 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.URL+"/admin/pending/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	waitFor := func(want string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended before %q", want)
				}
				if l == want {
					return
				}
			case <-timeout:
				t.Fatalf("no %q", want)
			}
		}
	}
	waitFor("event: pending")
	if resp, _ := do(t, c, http.MethodPost, b.URL+"/admin/logout", ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout on b: %d", resp.StatusCode)
	}
	waitFor("event: signout")
}

// TestSessionStoreDown: when the store cannot say whether a session is live, the answer is 503
// with Retry-After, not a sign-out.
func TestSessionStoreDown(t *testing.T) {
	tok := secret.Generate(secret.PrefixAdminToken)
	inst := servertest.Start(t, servertest.Options{AdminToken: tok})
	c := withCookie(t, signInAt(t, browserish(t), inst.URL, tok), inst.URL)
	if err := inst.Svc.Store.Close(); err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, c, http.MethodGet, inst.URL+"/admin/pending", "")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "store is unavailable") {
		t.Fatalf("pending with the store down: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = do(t, c, http.MethodPost, inst.URL+"/admin/logout", "")
	if resp.StatusCode != http.StatusServiceUnavailable || len(resp.Cookies()) != 0 {
		t.Fatalf("logout with the store down: %d, cookies %v (the cookie must stay so sign-out can be retried)", resp.StatusCode, resp.Cookies())
	}
	resp, _ = do(t, browserish(t), http.MethodPost, inst.URL+"/admin/login", "token="+url.QueryEscape(tok))
	if resp.StatusCode != http.StatusServiceUnavailable || len(resp.Cookies()) != 0 {
		t.Fatalf("login with the store down: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
}
