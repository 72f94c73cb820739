package doshii

import (
	"context"
	"crypto/sha256"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/secret"
)

var (
	locationTokenRE = regexp.MustCompile(`^pg_lt_[A-Za-z0-9_-]{43}$`)
	vendorKeyRE     = regexp.MustCompile(`^pg_vk_[A-Za-z0-9_-]{43}$`)
)

func TestOrganisationWithInlineLocation(t *testing.T) {
	e := newEnv(t)
	v := e.createVendor("acme-pos")
	r := e.do("POST", "/pos/v3/organisations", map[string]any{
		"name": "Acme Group", "email": "ops@acme.example", "phone": "+61 3 9000 0000",
		"addressLine1": "1 Collins St", "city": "Melbourne", "state": "VIC", "postalCode": "3000",
		"country": "au", "abn": "51 824 753 556", "companyNumber": "ACN 000 000 019",
		"location": map[string]any{
			"name": "Acme Café", "classification": "cafe\u0301" /* not a listed spelling */},
	}, "vendor", v.name, "Authorization", "Bearer "+v.key)
	wantMessage(t, r, http.StatusBadRequest)
	if !strings.Contains(r.str("message"), "location.classification") {
		t.Fatalf("message %q does not name location.classification", r.str("message"))
	}

	r = e.do("POST", "/pos/v3/organisations", map[string]any{
		"name": "Acme Group", "email": "ops@acme.example", "phone": "+61 3 9000 0000",
		"addressLine1": "1 Collins St", "city": "Melbourne", "state": "VIC", "postalCode": "3000",
		"country": "au", "abn": "51 824 753 556", "companyNumber": "ACN 000 000 019",
		"location": map[string]any{
			"name": "Acme Café", "classification": "café", "timezone": "Australia/Melbourne",
			"latitude": "-37.8136", "longitude": 144.9631, "phoneNumber": "(03) 9000 0001", "country": "AU",
		},
	}, "vendor", v.name, "Authorization", "Bearer "+v.key)
	if r.status != http.StatusCreated {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q, want no-store (the answer holds a location token)", r.header.Get("Cache-Control"))
	}
	if !strings.HasPrefix(r.str("id"), "do_") || r.str("vendorId") != v.id || r.str("name") != "Acme Group" ||
		r.str("country") != "AU" || r.str("abn") != "51824753556" || r.str("email") != "ops@acme.example" {
		t.Fatalf("organisation answer %s", r.raw)
	}
	loc, _ := r.body["location"].(map[string]any)
	if loc == nil {
		t.Fatalf("no inline location in %s", r.raw)
	}
	tok, _ := loc["token"].(string)
	if !locationTokenRE.MatchString(tok) {
		t.Fatalf("location token %q is not pg_lt_ + 256 bits", tok)
	}
	id, _ := loc["id"].(string)
	for k, want := range map[string]string{
		"organisationId": r.str("id"), "vendorId": v.id, "apiVersion": "v3", "name": "Acme Café",
		"classification": "Café", "timezone": "Australia/Melbourne", "latitude": "-37.8136",
		"longitude": "144.9631", "uri": e.srv.URL + "/pos/v3/locations/" + id,
	} {
		if got, _ := loc[k].(string); got != want {
			t.Errorf("location %s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"createdAt", "updatedAt"} {
		if s, _ := loc[k].(string); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`).MatchString(s) {
			t.Errorf("%s = %q, want 2006-01-02T15:04:05.000Z", k, s)
		}
	}
	// Stored as a hash only.
	l, err := e.st.GetDoshiiLocation(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if h := sha256.Sum256([]byte(tok)); !secret.Equal(l.TokenHash, h[:]) {
		t.Fatal("the stored token hash is not the SHA-256 of the token")
	}
	if strings.Contains(string(l.Body), tok) {
		t.Fatal("the location body holds the token")
	}

	// The token works in a location JWT, and a read shows no token.
	g := e.venueGet(id, v, tok)
	if g.status != http.StatusOK || g.str("id") != id || g.str("token") != "" || g.str("timezone") != "Australia/Melbourne" {
		t.Fatalf("GET location: %d %s", g.status, g.raw)
	}
	if _, has := g.body["token"]; has {
		t.Fatal("GET location shows the token")
	}

	// Duplicates: the same organisation name for this vendor → 409, nothing created.
	d := e.do("POST", "/pos/v3/organisations", map[string]any{"name": "Acme Group"},
		"vendor", v.name, "Authorization", "Bearer "+v.key)
	wantMessage(t, d, http.StatusConflict)
	// Another vendor may use the same name.
	w := e.createVendor("other-pos")
	if r := e.do("POST", "/pos/v3/organisations", map[string]any{"name": "Acme Group"},
		"vendor", w.name, "Authorization", "Bearer "+w.key); r.status != http.StatusCreated {
		t.Fatalf("same name, other vendor: %d %s", r.status, r.raw)
	}
}

func TestCreateLocation(t *testing.T) {
	e := newEnv(t)
	a := e.createVendor("vendor-a")
	b := e.createVendor("vendor-b")
	org := e.do("POST", "/pos/v3/organisations", map[string]any{"name": "Org A"}, "vendor", a.name, "Authorization", "Bearer "+a.key)
	if org.status != http.StatusCreated {
		t.Fatalf("%d %s", org.status, org.raw)
	}
	if _, has := org.body["location"]; has {
		t.Fatalf("organisation without inline location answered with one: %s", org.raw)
	}
	orgID := org.str("id")
	body := map[string]any{"name": "Venue 1", "organisationId": orgID, "country": "NZ", "timezone": "Pacific/Auckland",
		"latitude": -36.85, "longitude": "174.76", "addressLine1": "1 Queen St", "city": "Auckland", "postalCode": "1010"}
	r := e.do("POST", "/pos/v3/locations", body, "vendor", a.name, "Authorization", "Bearer "+a.key)
	if r.status != http.StatusCreated {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if !locationTokenRE.MatchString(r.str("token")) || r.str("organisationId") != orgID || r.str("vendorId") != a.id ||
		r.str("latitude") != "-36.85" || r.str("apiVersion") != "v3" || !strings.HasPrefix(r.str("id"), "dl_") {
		t.Fatalf("location answer %s", r.raw)
	}
	if r.header.Get("Location") != r.str("uri") {
		t.Errorf("Location header %q, uri %q", r.header.Get("Location"), r.str("uri"))
	}

	// Same name in the same organisation → 409.
	wantMessage(t, e.do("POST", "/pos/v3/locations", body, "vendor", a.name, "Authorization", "Bearer "+a.key), http.StatusConflict)
	// Another vendor naming A's organisation → 404, like an organisation that does not exist.
	body["name"] = "Venue 2"
	rb := e.do("POST", "/pos/v3/locations", body, "vendor", b.name, "Authorization", "Bearer "+b.key)
	wantMessage(t, rb, http.StatusNotFound)
	body["organisationId"] = "do_doesnotexist00000"
	rn := e.do("POST", "/pos/v3/locations", body, "vendor", a.name, "Authorization", "Bearer "+a.key)
	wantMessage(t, rn, http.StatusNotFound)
	if rb.str("message") != rn.str("message") {
		t.Errorf("foreign organisation %q and missing organisation %q answered differently", rb.str("message"), rn.str("message"))
	}
	// organisationId is required.
	delete(body, "organisationId")
	wantMessage(t, e.do("POST", "/pos/v3/locations", body, "vendor", a.name, "Authorization", "Bearer "+a.key), http.StatusBadRequest)
}

func TestOnboardingCredentials(t *testing.T) {
	e := newEnv(t)
	a := e.createVendor("vendor-a")
	b := e.createVendor("vendor-b")
	loc := e.onboard(a, "Org", "Venue")
	body := map[string]any{"name": "X"}
	cases := []struct {
		name string
		hdr  []string
	}{
		{"no headers", nil},
		{"no vendor header", []string{"Authorization", "Bearer " + a.key}},
		{"no authorization", []string{"vendor", a.name}},
		{"wrong vendor header with a right key", []string{"vendor", b.name, "Authorization", "Bearer " + a.key}},
		{"unknown vendor", []string{"vendor", "nobody", "Authorization", "Bearer " + a.key}},
		{"wrong key", []string{"vendor", a.name, "Authorization", "Bearer " + secret.Generate("pg_vk_")}},
		{"basic scheme", []string{"vendor", a.name, "Authorization", "Basic " + a.key}},
		{"a location JWT instead of the key", []string{"vendor", a.name, "Authorization", "Bearer " + locationJWT(a.key, loc.token, unix(testStart))}},
		{"the key twice", []string{"vendor", a.name, "Authorization", "Bearer " + a.key, "Authorization", "Bearer " + a.key}},
		{"empty bearer", []string{"vendor", a.name, "Authorization", "Bearer "}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", "/pos/v3/organisations", body, append([]string{"X-Test-Addr", "198.51.100." + c.name[:1]}, c.hdr...)...)
			wantMessage(t, r, http.StatusUnauthorized)
			if r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	// Nothing was created by any of them.
	r := e.do("POST", "/pos/v3/organisations", body, "vendor", a.name, "Authorization", "Bearer "+a.key)
	if r.status != http.StatusCreated {
		t.Fatalf("right credentials after refusals: %d %s", r.status, r.raw)
	}
	// The check happens before the body is read: a bad body with a bad key is 401, not 400.
	wantMessage(t, e.do("POST", "/pos/v3/organisations", "{", "vendor", a.name, "Authorization", "Bearer x"), http.StatusUnauthorized)
}

func TestOnboardingBodies(t *testing.T) {
	e := newEnv(t)
	v := e.createVendor("bodies")
	org := e.do("POST", "/pos/v3/organisations", map[string]any{"name": "Org"}, "vendor", v.name, "Authorization", "Bearer "+v.key)
	orgID := org.str("id")
	big := `{"name":"` + strings.Repeat("a", 70<<10) + `"}`
	cases := []struct {
		name, path, body, ctype, wantIn string
	}{
		{"no content type", "/pos/v3/organisations", `{"name":"a"}`, "<delete>", "Content-Type"},
		{"form content type", "/pos/v3/organisations", `name=a`, "application/x-www-form-urlencoded", "Content-Type"},
		{"not json", "/pos/v3/organisations", `{"name":`, "", "JSON"},
		{"array", "/pos/v3/organisations", `[{"name":"a"}]`, "", "object"},
		{"duplicate key", "/pos/v3/organisations", `{"name":"a","name":"b"}`, "", "repeats"},
		{"duplicate key other case", "/pos/v3/organisations", `{"name":"a","Name":"b"}`, "", "repeats"},
		{"unknown field", "/pos/v3/organisations", `{"name":"a","nmae":"b"}`, "", `"nmae"`},
		{"name missing", "/pos/v3/organisations", `{"country":"AU"}`, "", "name is required"},
		{"name blank", "/pos/v3/organisations", `{"name":"  "}`, "", "name must not be blank"},
		{"name a number", "/pos/v3/organisations", `{"name":12}`, "", "name must be a string"},
		{"name too long", "/pos/v3/organisations", `{"name":"` + strings.Repeat("é", 201) + `"}`, "", "at most 200"},
		{"control character", "/pos/v3/organisations", `{"name":"a\u0007b"}`, "", "control"},
		{"country 3 letters", "/pos/v3/organisations", `{"name":"a","country":"AUS"}`, "", "country"},
		{"country digits", "/pos/v3/organisations", `{"name":"a","country":"A1"}`, "", "country"},
		{"email with a name", "/pos/v3/organisations", `{"name":"a","email":"Bob <bob@example.com>"}`, "", "email"},
		{"abn short", "/pos/v3/organisations", `{"name":"a","abn":"123"}`, "", "abn"},
		{"phone letters", "/pos/v3/organisations", `{"name":"a","phone":"call me"}`, "", "phone"},
		{"location a string", "/pos/v3/organisations", `{"name":"a","location":"x"}`, "", "location must be an object"},
		{"inline organisationId", "/pos/v3/organisations", `{"name":"a","location":{"name":"l","organisationId":"do_x"}}`, "", "location.organisationId"},
		{"inline timezone", "/pos/v3/organisations", `{"name":"a","location":{"name":"l","timezone":"Mars/Olympus_Mons"}}`, "", "location.timezone"},
		{"timezone Local", "/pos/v3/locations", `{"name":"l","organisationId":"` + orgID + `","timezone":"Local"}`, "", "timezone"},
		{"timezone path", "/pos/v3/locations", `{"name":"l","organisationId":"` + orgID + `","timezone":"../../etc/passwd"}`, "", "timezone"},
		{"latitude 91", "/pos/v3/locations", `{"name":"l","organisationId":"` + orgID + `","latitude":91}`, "", "latitude"},
		{"latitude string 90.5", "/pos/v3/locations", `{"name":"l","organisationId":"` + orgID + `","latitude":"90.5"}`, "", "latitude"},
		{"latitude NaN", "/pos/v3/locations", `{"name":"l","organisationId":"` + orgID + `","latitude":"NaN"}`, "", "latitude"},
		{"latitude hex", "/pos/v3/locations", `{"name":"l","organisationId":"` + orgID + `","latitude":"0x1p-2"}`, "", "latitude"},
		{"latitude bool", "/pos/v3/locations", `{"name":"l","organisationId":"` + orgID + `","latitude":true}`, "", "latitude"},
		{"longitude -181", "/pos/v3/locations", `{"name":"l","organisationId":"` + orgID + `","longitude":-181}`, "", "longitude"},
		{"classification unknown", "/pos/v3/locations", `{"name":"l","organisationId":"` + orgID + `","classification":"Casino"}`, "", "classification"},
		{"organisationId a number", "/pos/v3/locations", `{"name":"l","organisationId":5}`, "", "organisationId must be a string"},
		{"organisationId odd", "/pos/v3/locations", `{"name":"l","organisationId":"do_x/../y"}`, "", "organisationId"},
		{"invalid utf-8", "/pos/v3/organisations", "{\"name\":\"a\xffb\"}", "", "UTF-8"},
		{"trailing data", "/pos/v3/organisations", `{"name":"a"} {}`, "", "JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := []string{"vendor", v.name, "Authorization", "Bearer " + v.key, "Content-Type", "<delete>"}
			switch c.ctype {
			case "":
				hdr = append(hdr, "Content-Type", "application/json")
			case "<delete>":
			default:
				hdr = append(hdr, "Content-Type", c.ctype)
			}
			r := e.do("POST", c.path, []byte(c.body), hdr...)
			wantMessage(t, r, http.StatusBadRequest)
			if !strings.Contains(r.str("message"), c.wantIn) {
				t.Errorf("message %q does not mention %q", r.str("message"), c.wantIn)
			}
		})
	}
	// A body over the limit is 413 (RFC 9110 §15.5.14), in Doshii's shape.
	for _, path := range []string{"/pos/v3/organisations", "/pos/v3/locations"} {
		r := e.do("POST", path, []byte(big), "vendor", v.name, "Authorization", "Bearer "+v.key, "Content-Type", "application/json")
		wantMessage(t, r, http.StatusRequestEntityTooLarge)
		if !strings.Contains(r.str("message"), "too large") {
			t.Errorf("%s: message %q", path, r.str("message"))
		}
	}
	// None of them created anything: the only organisation is the first one, and "a"/"l" are free.
	if r := e.do("POST", "/pos/v3/organisations", map[string]any{"name": "a"}, "vendor", v.name, "Authorization", "Bearer "+v.key); r.status != http.StatusCreated {
		t.Fatalf("organisation a after refusals: %d %s", r.status, r.raw)
	}
	if r := e.do("POST", "/pos/v3/locations", map[string]any{"name": "l", "organisationId": orgID}, "vendor", v.name, "Authorization", "Bearer "+v.key); r.status != http.StatusCreated {
		t.Fatalf("location l after refusals: %d %s", r.status, r.raw)
	}
}

func TestAdminVendors(t *testing.T) {
	e := newEnv(t)
	v := e.createVendor("acme")
	if !vendorKeyRE.MatchString(v.key) || !strings.HasPrefix(v.id, "dv_") {
		t.Fatalf("vendor %+v", v)
	}
	// Stored sealed, bound to its row, with its SHA-256.
	sv, err := e.st.GetDoshiiVendor(context.Background(), v.id)
	if err != nil {
		t.Fatal(err)
	}
	k := sv.Keys[0]
	if strings.Contains(string(k.Sealed), v.key) || !secret.Equal(k.Hash, secret.Hash(v.key)) {
		t.Fatal("vendor key not stored sealed with its hash")
	}
	plain, err := e.svc.Sealer.Open(k.Sealed, []byte("vendor-key:"+v.id+":"+k.ID))
	if err != nil || string(plain) != v.key {
		t.Fatalf("sealed key does not open with its AD: %v", err)
	}
	if _, err := e.svc.Sealer.Open(k.Sealed, []byte("vendor-key:dv_other:"+k.ID)); err == nil {
		t.Fatal("sealed key opens under another vendor's AD")
	}

	for _, c := range []struct {
		body   any
		status int
	}{
		{map[string]any{"api_name": "acme"}, http.StatusConflict},
		{map[string]any{"api_name": ""}, http.StatusBadRequest},
		{map[string]any{"api_name": "bad name"}, http.StatusBadRequest},
		{map[string]any{"api_name": strings.Repeat("a", 65)}, http.StatusBadRequest},
		{map[string]any{"api_name": "x", "extra": 1}, http.StatusBadRequest},
		{`{"api_name":"x","api_name":"y"}`, http.StatusBadRequest},
	} {
		r := e.do("POST", "/admin/api/v1/doshii/vendors", c.body)
		if r.status != c.status || r.str("error") == "" || r.str("error_description") == "" {
			t.Errorf("create %v: %d %s, want %d with {error, error_description}", c.body, r.status, r.raw, c.status)
		}
	}

	l := e.do("GET", "/admin/api/v1/doshii/vendors", nil)
	if l.status != http.StatusOK || strings.Contains(string(l.raw), v.key) || !strings.Contains(string(l.raw), `"api_name":"acme"`) {
		t.Fatalf("list: %d %s", l.status, l.raw)
	}
	if r := e.do("POST", "/admin/api/v1/doshii/vendors/dv_nope/rotate-key", nil); r.status != http.StatusNotFound {
		t.Fatalf("rotate unknown vendor: %d %s", r.status, r.raw)
	}
	if r := e.do("POST", "/admin/api/v1/doshii/locations/dl_nope/rotate-token", nil); r.status != http.StatusNotFound {
		t.Fatalf("rotate unknown location: %d %s", r.status, r.raw)
	}
	acts := strings.Join(e.auditActions(), "\n")
	if !strings.Contains(acts, "doshii.vendor.create|"+v.id) {
		t.Fatalf("no audit of the vendor creation in:\n%s", acts)
	}
	if strings.Contains(e.logBuf.String(), v.key) {
		t.Fatal("the vendor key was logged")
	}
}
