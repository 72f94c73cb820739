package doshii

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	dto "github.com/prometheus/client_model/go"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/metrics"
	"github.com/posgate/posgate/internal/testutil/doctest"
)

// twoVendors is vendors A and B, each with one location.
func twoVendors(t *testing.T, e *env) (a, b vendor, la, lb location) {
	t.Helper()
	a = e.createVendor("vendor-a")
	b = e.createVendor("vendor-b")
	la = e.onboard(a, "Org A", "Venue A")
	lb = e.onboard(b, "Org B", "Venue B")
	return
}

func TestVenueJWT(t *testing.T) {
	e := newEnv(t)
	a, b, la, lb := twoVendors(t, e)
	now := testStart
	ts := func(d time.Duration) string { return unix(now.Add(d)) }
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs256, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"locationToken": la.token, "timestamp": now.Unix()}).SignedString(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	hs512, err := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"locationToken": la.token, "timestamp": now.Unix()}).SignedString([]byte(a.key))
	if err != nil {
		t.Fatal(err)
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"locationToken": la.token, "timestamp": now.Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	hsWithSig := func(alg string) string { // alg header changed, HS256 signature kept
		return signRaw(`{"alg":"`+alg+`","typ":"JWT"}`, fmt.Sprintf(`{"locationToken":%q,"timestamp":%s}`, la.token, ts(0)), []byte(a.key))
	}
	cases := []struct {
		name   string
		vendor string
		jwt    string
		status int
	}{
		{"valid", a.name, locationJWT(a.key, la.token, ts(0)), 200},
		{"valid via golang-jwt", a.name, mustHS256(t, a.key, la.token, now.Unix()), 200},
		{"wrong vendor header with a right key", b.name, locationJWT(a.key, la.token, ts(0)), 401},
		{"signed with another vendor's key", a.name, locationJWT(b.key, la.token, ts(0)), 401},
		{"a location of vendor A with vendor B's key", b.name, locationJWT(b.key, la.token, ts(0)), 401},
		{"unknown vendor", "nobody", locationJWT(a.key, la.token, ts(0)), 401},
		{"unknown location token", a.name, locationJWT(a.key, "pg_lt_unknown", ts(0)), 401},
		{"past bound, inside", a.name, locationJWT(a.key, la.token, ts(-600*time.Second)), 200},
		{"past bound, just outside", a.name, locationJWT(a.key, la.token, ts(-601*time.Second)), 401},
		{"future bound, inside", a.name, locationJWT(a.key, la.token, ts(60*time.Second)), 200},
		{"future bound, just outside", a.name, locationJWT(a.key, la.token, ts(61*time.Second)), 401},
		{"float timestamp", a.name, locationJWT(a.key, la.token, unix(now)+".0"), 200},
		{"float timestamp with fraction", a.name, locationJWT(a.key, la.token, unix(now)+".25"), 200},
		{"float past bound", a.name, locationJWT(a.key, la.token, strconv.FormatInt(now.Unix()-600, 10)+".0"), 200},
		{"float past bound, half a second outside", a.name, locationJWT(a.key, la.token, strconv.FormatInt(now.Unix()-601, 10)+".5"), 401},
		{"float future bound, half a second outside", a.name, locationJWT(a.key, la.token, strconv.FormatInt(now.Unix()+60, 10)+".5"), 401},
		{"exponent timestamp", a.name, locationJWT(a.key, la.token, fmt.Sprintf("%.9e", float64(now.Unix()))), 200},
		{"milliseconds", a.name, locationJWT(a.key, la.token, strconv.FormatInt(now.UnixMilli(), 10)), 401},
		{"huge timestamp", a.name, locationJWT(a.key, la.token, "1e400"), 401},
		{"string timestamp", a.name, locationJWT(a.key, la.token, strconv.Quote(ts(0))), 401},
		{"no timestamp", a.name, signRaw(`{"alg":"HS256"}`, fmt.Sprintf(`{"locationToken":%q}`, la.token), []byte(a.key)), 401},
		{"no location token", a.name, signRaw(`{"alg":"HS256"}`, fmt.Sprintf(`{"timestamp":%s}`, ts(0)), []byte(a.key)), 401},
		{"location token a number", a.name, signRaw(`{"alg":"HS256"}`, fmt.Sprintf(`{"locationToken":5,"timestamp":%s}`, ts(0)), []byte(a.key)), 401},
		{"duplicate claim", a.name, signRaw(`{"alg":"HS256"}`, fmt.Sprintf(`{"locationToken":%q,"locationToken":%q,"timestamp":%s}`, lb.token, la.token, ts(0)), []byte(a.key)), 401},
		// RFC 7519 §4.1.4–5: registered claims present in the token are honoured even inside the window.
		{"exp in the past", a.name, signRaw(`{"alg":"HS256"}`, fmt.Sprintf(`{"locationToken":%q,"timestamp":%s,"exp":%d}`, la.token, ts(0), now.Unix()-1), []byte(a.key)), 401},
		{"exp in the future", a.name, signRaw(`{"alg":"HS256"}`, fmt.Sprintf(`{"locationToken":%q,"timestamp":%s,"exp":%d}`, la.token, ts(0), now.Unix()+60), []byte(a.key)), 200},
		{"nbf in the future", a.name, signRaw(`{"alg":"HS256"}`, fmt.Sprintf(`{"locationToken":%q,"timestamp":%s,"nbf":%d}`, la.token, ts(0), now.Unix()+30), []byte(a.key)), 401},
		{"exp not a number", a.name, signRaw(`{"alg":"HS256"}`, fmt.Sprintf(`{"locationToken":%q,"timestamp":%s,"exp":"soon"}`, la.token, ts(0)), []byte(a.key)), 401},
		// RFC 8259 §8.1: a claim that is not UTF-8 is refused, not read as U+FFFD.
		{"claim not UTF-8", a.name, signRaw(`{"alg":"HS256"}`, fmt.Sprintf("{\"locationToken\":%q,\"timestamp\":%s,\"note\":\"\xff\"}", la.token, ts(0)), []byte(a.key)), 401},
		{"alg none", a.name, none, 401},
		{"alg HS512", a.name, hs512, 401},
		{"alg RS256", a.name, rs256, 401},
		{"alg RS256 header, HS256 signature", a.name, hsWithSig("RS256"), 401},
		{"alg hs256 lower case", a.name, hsWithSig("hs256"), 401},
		{"garbage", a.name, "not.a.jwt", 401},
		{"the raw vendor key", a.name, a.key, 401},
		{"the raw location token", a.name, la.token, 401},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// One address per case: the throttle must not decide these.
			r := e.do("GET", "/pos/v3/locations/"+la.id, nil, "vendor", c.vendor, "Authorization", "Bearer "+c.jwt, "X-Test-Addr", "192.0.2."+strconv.Itoa(i))
			if c.status == 200 {
				if r.status != 200 || r.str("id") != la.id {
					t.Fatalf("%d %s", r.status, r.raw)
				}
				return
			}
			wantMessage(t, r, c.status)
		})
	}
	if strings.Contains(e.logBuf.String(), la.token) || strings.Contains(e.logBuf.String(), a.key) {
		t.Fatal("a secret was logged")
	}
}

func mustHS256(t *testing.T, key, locationToken string, ts int64) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"locationToken": locationToken, "timestamp": ts}).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLocationReadsOnlyItself(t *testing.T) {
	e := newEnv(t)
	a, _, la, lb := twoVendors(t, e)
	la2 := e.onboard(a, "Org A2", "Venue A2") // same vendor, other location
	for _, c := range []struct {
		name, id string
		hdr      []string
		status   int
	}{
		{"itself", la.id, nil, 200},
		{"itself with a matching doshii-location-id", la.id, []string{LocationHeader, la.id}, 200},
		{"another vendor's location", lb.id, nil, 403},
		{"a sibling location of the same vendor", la2.id, nil, 403},
		{"a location that does not exist", "dl_doesnotexist0000", nil, 403},
		{"itself, naming another in doshii-location-id", la.id, []string{LocationHeader, la2.id}, 403},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.venueGet(c.id, a, la.token, c.hdr...)
			if c.status == 200 {
				if r.status != 200 || r.str("id") != la.id {
					t.Fatalf("%d %s", r.status, r.raw)
				}
				return
			}
			wantMessage(t, r, c.status)
		})
	}
}

func TestVendorKeyRotationOverlap(t *testing.T) {
	e := newEnv(t, envOptions{cfg: func(c *config.Config) { c.Doshii.KeyOverlap = 300 }})
	a, _, la, _ := twoVendors(t, e)
	// Warm the cache with the old key.
	if r := e.venueGet(la.id, a, la.token); r.status != 200 {
		t.Fatalf("before rotation: %d %s", r.status, r.raw)
	}
	rot := e.do("POST", "/admin/api/v1/doshii/vendors/"+a.id+"/rotate-key", nil)
	if rot.status != 200 || !vendorKeyRE.MatchString(rot.str("vendor_key")) || rot.str("vendor_key") == a.key {
		t.Fatalf("rotate: %d %s", rot.status, rot.raw)
	}
	if rot.header.Get("Cache-Control") != "no-store" {
		t.Error("rotation answer is cacheable")
	}
	newer := a
	newer.key = rot.str("vendor_key")

	onboardWith := func(key string) int {
		return e.do("POST", "/pos/v3/organisations", map[string]any{"name": "O " + strconv.Itoa(int(e.clk.Now().Unix())) + key[len(key)-4:]},
			"vendor", a.name, "Authorization", "Bearer "+key).status
	}
	check := func(when string, old, new int) {
		t.Helper()
		if r := e.venueGet(la.id, a, la.token); r.status != old {
			t.Errorf("%s: old key JWT → %d, want %d (%s)", when, r.status, old, r.raw)
		}
		if r := e.venueGet(la.id, newer, la.token); r.status != new {
			t.Errorf("%s: new key JWT → %d, want %d (%s)", when, r.status, new, r.raw)
		}
		if s := onboardWith(a.key); s != map[int]int{200: 201, 401: 401}[old] {
			t.Errorf("%s: old key onboarding → %d", when, s)
		}
		if s := onboardWith(newer.key); s != 201 {
			t.Errorf("%s: new key onboarding → %d", when, s)
		}
	}
	check("right after rotation", 200, 200)
	e.clk.Advance(299 * time.Second)
	check("one second before the overlap ends", 200, 200)
	e.clk.Advance(time.Second)
	check("when the overlap ends", 401, 200)
	e.clk.Advance(time.Hour)
	check("an hour later", 401, 200)
}

// A key rotated on another replica (here: straight in the store, behind the module's back) is
// accepted at once even though the vendor is cached.
func TestRotationOnAnotherReplica(t *testing.T) {
	e := newEnv(t)
	a, _, la, _ := twoVendors(t, e)
	if r := e.venueGet(la.id, a, la.token); r.status != 200 {
		t.Fatal(r.status)
	}
	other, err := newModule(e.svc) // a second module over the same store: another replica
	if err != nil {
		t.Fatal(err)
	}
	k, raw, err := other.newVendorKey(a.id, e.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.AddVendorKey(t.Context(), a.id, k, e.clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(2 * time.Second)
	n := a
	n.key = raw
	if r := e.venueGet(la.id, n, la.token); r.status != 200 {
		t.Fatalf("new key from another replica: %d %s", r.status, r.raw)
	}
}

func TestLocationTokenRotation(t *testing.T) {
	e := newEnv(t)
	a, _, la, _ := twoVendors(t, e)
	if r := e.venueGet(la.id, a, la.token); r.status != 200 {
		t.Fatal(r.status)
	}
	r := e.do("POST", "/admin/api/v1/doshii/locations/"+la.id+"/rotate-token", nil)
	if r.status != 200 || !locationTokenRE.MatchString(r.str("token")) || r.str("token") == la.token {
		t.Fatalf("rotate-token: %d %s", r.status, r.raw)
	}
	wantMessage(t, e.venueGet(la.id, a, la.token), 401) // at once, though it was cached
	if g := e.venueGet(la.id, a, r.str("token")); g.status != 200 {
		t.Fatalf("new token: %d %s", g.status, g.raw)
	}
}

func TestThrottle(t *testing.T) {
	limits := auth.ThrottleLimits{Window: 300 * time.Second, PerAddress: 20, PerAddressIdent: 5, PerIdentity: 12, IdentityBackoff: 60 * time.Second}
	e := newEnv(t, envOptions{limits: &limits})
	a, b, la, lb := twoVendors(t, e)
	bad := func(addr string) response {
		return e.do("GET", "/pos/v3/locations/"+la.id, nil, "vendor", a.name,
			"Authorization", "Bearer "+locationJWT(b.key, la.token, unix(e.clk.Now())), "X-Test-Addr", addr)
	}
	good := func(addr string) response {
		return e.do("GET", "/pos/v3/locations/"+la.id, nil, "vendor", a.name,
			"Authorization", "Bearer "+locationJWT(a.key, la.token, unix(e.clk.Now())), "X-Test-Addr", addr)
	}
	// Per address and vendor first: 5 failures from one address block it, with the right key too.
	for i := 0; i < 5; i++ {
		wantMessage(t, bad("203.0.113.1"), 401)
	}
	r := good("203.0.113.1")
	wantMessage(t, r, 429)
	if ra, _ := strconv.Atoi(r.header.Get("Retry-After")); ra < 1 || ra > 300 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	// Other addresses and other vendors are unaffected.
	if r := good("203.0.113.2"); r.status != 200 {
		t.Fatalf("other address: %d %s", r.status, r.raw)
	}
	if r := e.venueGet(lb.id, b, lb.token, "X-Test-Addr", "203.0.113.1"); r.status != 200 {
		t.Fatalf("other vendor from the blocked address: %d %s", r.status, r.raw)
	}
	// Claim problems of correctly signed JWTs do not count: a POS with a slow clock cannot lock
	// its vendor out.
	for i := 0; i < 10; i++ {
		r := e.do("GET", "/pos/v3/locations/"+la.id, nil, "vendor", a.name,
			"Authorization", "Bearer "+locationJWT(a.key, la.token, unix(e.clk.Now().Add(-time.Hour))), "X-Test-Addr", "203.0.113.3")
		wantMessage(t, r, 401)
	}
	if r := good("203.0.113.3"); r.status != 200 {
		t.Fatalf("stale timestamps throttled the address: %d %s", r.status, r.raw)
	}
	// Then the vendor-wide limit (higher, short, audited): failures spread over many addresses.
	for i := 0; i < 7; i++ { // 5 counted above + 7 = 12
		wantMessage(t, bad(fmt.Sprintf("198.18.0.%d", i)), 401)
	}
	r = good("203.0.113.9")
	wantMessage(t, r, 429)
	if !strings.Contains(strings.Join(e.auditActions(), "\n"), "throttle.identity_block|doshii.vendor:"+a.id) {
		t.Fatalf("vendor-wide block not audited: %v", e.auditActions())
	}
	// Short: after the backoff the vendor works again from a fresh address.
	e.clk.Advance(61 * time.Second)
	if r := good("203.0.113.10"); r.status != 200 {
		t.Fatalf("after the vendor backoff: %d %s", r.status, r.raw)
	}
	// Onboarding failures count in the same scope.
	for i := 0; i < 5; i++ {
		wantMessage(t, e.do("POST", "/pos/v3/organisations", map[string]any{"name": "x"}, "vendor", b.name,
			"Authorization", "Bearer wrong", "X-Test-Addr", "203.0.113.20"), 401)
	}
	wantMessage(t, e.do("POST", "/pos/v3/organisations", map[string]any{"name": "x"}, "vendor", b.name,
		"Authorization", "Bearer "+b.key, "X-Test-Addr", "203.0.113.20"), 429)
	// Failed checks are audited without secrets.
	acts := strings.Join(e.auditActions(), "\n")
	if !strings.Contains(acts, "doshii.auth_failed|location_jwt|invalid_jwt") || !strings.Contains(acts, "doshii.auth_failed|vendor_key|invalid_vendor_key") {
		t.Fatalf("failed checks not audited:\n%s", acts)
	}
	for _, s := range []string{a.key, b.key, la.token} {
		if strings.Contains(acts, s) || strings.Contains(e.logBuf.String(), s) {
			t.Fatal("a secret reached the audit trail or the log")
		}
	}
}

// TestPyJWT: a location JWT minted by a third-party library (PyJWT, Debian's python3-jwt) with a
// float timestamp, as Python clients naturally produce, is accepted.
func TestPyJWT(t *testing.T) {
	python := doctest.PythonWithJWT(t)
	e := newEnv(t, envOptions{clock: clock.System{}})
	a, _, la, _ := twoVendors(t, e)
	script := `import jwt, os, sys, time
tok = jwt.encode({"locationToken": os.environ["LT"], "timestamp": time.time()}, os.environ["VK"], algorithm="HS256")
sys.stdout.write(tok if isinstance(tok, str) else tok.decode())`
	cmd := exec.Command(python, "-c", script)
	cmd.Env = append(os.Environ(), "LT="+la.token, "VK="+a.key)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pyjwt: %v", err)
	}
	r := e.do("GET", "/pos/v3/locations/"+la.id, nil, "vendor", a.name, "Authorization", "Bearer "+string(out))
	if r.status != 200 || r.str("id") != la.id {
		t.Fatalf("PyJWT token refused: %d %s", r.status, r.raw)
	}
}

// The socket handshakes reuse the Verifier: the cloud-POS vendor JWT {vendor, timestamp} and the
// on-premises raw location token.
func TestSocketCredentials(t *testing.T) {
	e := newEnv(t)
	a, b, la, lb := twoVendors(t, e)
	v := e.mod.Verifier()
	ctx := t.Context()
	now := e.clk.Now()
	vendorJWT := func(key, vendorClaim, ts string) string {
		return signRaw(`{"alg":"HS256","typ":"JWT"}`, fmt.Sprintf(`{"vendor":%q,"timestamp":%s}`, vendorClaim, ts), []byte(key))
	}
	got, exp, err := v.AuthenticateVendorJWT(ctx, "192.0.2.1", a.name, vendorJWT(a.key, a.name, unix(now)+".0"))
	if err != nil || got.ID != a.id || got.APIName != a.name || !exp.Equal(now.Add(600*time.Second)) {
		t.Fatalf("vendor JWT: %+v %v %v", got, exp, err)
	}
	for name, c := range map[string]struct{ vendor, jwt string }{
		"vendor claim names another vendor": {a.name, vendorJWT(a.key, b.name, unix(now))},
		"signed with another vendor's key":  {a.name, vendorJWT(b.key, a.name, unix(now))},
		"vendor query names another vendor": {b.name, vendorJWT(a.key, a.name, unix(now))},
		"too old":                           {a.name, vendorJWT(a.key, a.name, unix(now.Add(-601*time.Second)))},
		"too new":                           {a.name, vendorJWT(a.key, a.name, unix(now.Add(61*time.Second)))},
		"a location JWT":                    {a.name, locationJWT(a.key, la.token, unix(now))},
		"alg none":                          {a.name, b64(`{"alg":"none"}`) + "." + b64(`{"vendor":"vendor-a","timestamp":`+unix(now)+`}`) + "."},
	} {
		if _, _, err := v.AuthenticateVendorJWT(ctx, "192.0.2.2", c.vendor, c.jwt); err == nil {
			t.Errorf("%s: accepted", name)
		} else if e, ok := err.(interface{ Error() string }); !ok || !strings.Contains(e.Error(), "unauthenticated") {
			t.Errorf("%s: %v, want an unauthenticated error", name, err)
		}
	}

	venue, err := v.AuthenticateLocationToken(ctx, "192.0.2.3", lb.token)
	if err != nil || venue.Location.ID != lb.id || venue.Vendor.ID != b.id || !venue.ExpiresAt.IsZero() {
		t.Fatalf("location token: %+v %v", venue, err)
	}
	if p := venue.Principal(); p.Location != lb.id || p.Vendor != b.id || p.Dialect != "doshii" {
		t.Fatalf("principal %+v", p)
	}
	// Guessing location tokens is throttled per address (5 per address and identity, 20 per address).
	for i := 0; i < 20; i++ {
		if _, err := v.AuthenticateLocationToken(ctx, "192.0.2.4", "pg_lt_guess"+strconv.Itoa(i)); err == nil {
			t.Fatal("a guessed token was accepted")
		}
	}
	if _, err := v.AuthenticateLocationToken(ctx, "192.0.2.4", la.token); err == nil || !strings.Contains(err.Error(), "throttled") {
		t.Fatalf("after 20 guesses from one address: %v, want throttled", err)
	}
	if _, err := v.AuthenticateLocationToken(ctx, "192.0.2.5", la.token); err != nil {
		t.Fatalf("another address: %v", err)
	}
}

func TestVerificationMetrics(t *testing.T) {
	e := newEnv(t)
	a, b, la, _ := twoVendors(t, e)
	count := func(outcome string) float64 {
		var m dto.Metric
		if err := metrics.TokenVerifications.WithLabelValues(Dialect, outcome).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	before := map[string]float64{}
	for _, o := range []string{"ok", "alg", "signature", "invalid_claims", "unknown_vendor"} {
		before[o] = count(o)
	}
	e.venueGet(la.id, a, la.token)
	e.do("GET", "/pos/v3/locations/"+la.id, nil, "vendor", a.name, "Authorization", "Bearer "+signRaw(`{"alg":"HS512"}`, `{}`, []byte(a.key)))
	e.do("GET", "/pos/v3/locations/"+la.id, nil, "vendor", a.name, "Authorization", "Bearer "+locationJWT(b.key, la.token, unix(e.clk.Now())))
	e.do("GET", "/pos/v3/locations/"+la.id, nil, "vendor", a.name, "Authorization", "Bearer "+locationJWT(a.key, la.token, "1"))
	e.do("GET", "/pos/v3/locations/"+la.id, nil, "vendor", "nobody", "Authorization", "Bearer "+locationJWT(a.key, la.token, "1"))
	for o, n := range before {
		if count(o) != n+1 {
			t.Errorf("outcome %s counted %v times, want 1", o, count(o)-n)
		}
	}
}

// A guesser who hangs up right after sending is still counted.
func TestFailuresCountedAfterHangUp(t *testing.T) {
	e := newEnv(t)
	a, b, la, _ := twoVendors(t, e)
	v := e.mod.Verifier()
	if _, err := v.AuthenticateVenue(t.Context(), "192.0.2.7", a.name, locationJWT(a.key, la.token, unix(e.clk.Now()))); err != nil {
		t.Fatal(err) // warms the vendor cache
	}
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	for i := 0; i < 5; i++ {
		if _, err := v.AuthenticateVenue(gone, "192.0.2.8", a.name, locationJWT(b.key, la.token, unix(e.clk.Now()))); err == nil {
			t.Fatal("accepted")
		}
	}
	_, err := v.AuthenticateVenue(t.Context(), "192.0.2.8", a.name, locationJWT(a.key, la.token, unix(e.clk.Now())))
	if err == nil || !strings.Contains(err.Error(), "throttled") {
		t.Fatalf("after 5 failures with a cancelled context: %v, want throttled", err)
	}
}

// A location token rotated on one replica stops working on the others at once when they hear the
// event, and within the location cache's lifetime when they miss it.
func TestLocationTokenRotationReplicas(t *testing.T) {
	e := newEnv(t)
	a, _, la, _ := twoVendors(t, e)
	listening, err := newModule(e.svc) // shares the event bus
	if err != nil {
		t.Fatal(err)
	}
	deaf := *e.svc
	deaf.Events = nil // misses every notice
	missing, err := newModule(&deaf)
	if err != nil {
		t.Fatal(err)
	}
	jwt := func() string { return locationJWT(a.key, la.token, unix(e.clk.Now())) }
	for _, m := range []*Module{listening, missing} {
		if _, err := m.Verifier().AuthenticateVenue(t.Context(), "192.0.2.1", a.name, jwt()); err != nil {
			t.Fatal(err) // cached now
		}
	}
	if r := e.do("POST", "/admin/api/v1/doshii/locations/"+la.id+"/rotate-token", nil); r.status != 200 {
		t.Fatalf("rotate: %d %s", r.status, r.raw)
	}
	if _, err := listening.Verifier().AuthenticateVenue(t.Context(), "192.0.2.1", a.name, jwt()); err == nil {
		t.Fatal("a replica that heard the rotation still accepts the old token")
	}
	if _, err := missing.Verifier().AuthenticateVenue(t.Context(), "192.0.2.1", a.name, jwt()); err != nil {
		t.Fatalf("within the cache lifetime a deaf replica still accepts (documented): %v", err)
	}
	e.clk.Advance(locationCacheTTL)
	if _, err := missing.Verifier().AuthenticateVenue(t.Context(), "192.0.2.1", a.name, jwt()); err == nil {
		t.Fatal("a deaf replica still accepts the old token after the cache lifetime")
	}
}
