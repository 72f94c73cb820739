package doshii_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/posgate/posgate/client/doshii"
	"github.com/posgate/posgate/client/tokensource"
	"github.com/posgate/posgate/internal/server/servertest"
)

type counting struct{ n atomic.Int64 }

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

type env struct {
	inst     *servertest.Instance
	vendorID string
	client   *doshii.Client
	rawKey   string
	net      *counting
	now      atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{net: &counting{}}
	e.now.Store(time.Now().UnixNano())
	e.inst = servertest.Start(t, servertest.Options{})
	st, v := e.inst.Admin(t, "POST", "/doshii/vendors", map[string]any{"api_name": "myposco"})
	if st != http.StatusCreated {
		t.Fatalf("create vendor: %d %v", st, v)
	}
	e.vendorID = v["id"].(string)
	e.rawKey = v["vendor_key"].(string)
	e.client = &doshii.Client{
		BaseURL: e.inst.URL + "/pos/v3", Vendor: "myposco", Key: doshii.NewVendorKey(v["vendor_key"].(string)),
		HTTPClient: &http.Client{Transport: e.net, Timeout: 30 * time.Second},
		Now:        func() time.Time { return time.Unix(0, e.now.Load()) },
	}
	return e
}

func (e *env) onboard(t *testing.T) *doshii.Location {
	t.Helper()
	org, err := e.client.CreateOrganisation(context.Background(), doshii.Organisation{
		Name: "Harbour Group", Email: "ops@harbour.example", Country: "AU",
		Location: &doshii.Location{Name: "Harbour Bar", Classification: "Bar", Timezone: "Australia/Sydney", Latitude: "-33.8688"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if org.ID == "" || org.Location == nil || org.Location.Token == "" || org.Location.OrganisationID != org.ID {
		t.Fatalf("organisation %+v", org)
	}
	return org.Location
}

func TestOnboardingAndVenueCalls(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	loc := e.onboard(t)
	second, err := e.client.CreateLocation(ctx, doshii.Location{Name: "Harbour Kitchen", OrganisationID: loc.OrganisationID, Classification: "Restaurant"})
	if err != nil || second.Token == "" || second.APIVersion != "v3" {
		t.Fatalf("second location: %+v %v", second, err)
	}
	got, err := e.client.GetLocation(ctx, loc.ID, loc.Token)
	if err != nil || got.ID != loc.ID || got.Name != "Harbour Bar" || got.Token != "" {
		t.Fatalf("get location: %+v %v", got, err)
	}
	// A location token is bound to its location: another's id is refused.
	var de *doshii.Error
	if _, err := e.client.GetLocation(ctx, second.ID, loc.Token); !errors.As(err, &de) || de.Status != 403 {
		t.Fatalf("another location: %v", err)
	}
	if _, err := e.client.CreateLocation(ctx, doshii.Location{Name: "Harbour Kitchen", OrganisationID: loc.OrganisationID}); !errors.As(err, &de) || de.Status != 409 {
		t.Fatalf("duplicate: %v", err)
	}
	wrong := *e.client
	wrong.Key = doshii.NewVendorKey("pg_vk_wrong")
	_, err = wrong.CreateOrganisation(ctx, doshii.Organisation{Name: "Another Group"})
	if !errors.As(err, &de) || de.Status != 401 || de.Message != "invalid vendor credentials" {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := wrong.GetLocation(ctx, loc.ID, loc.Token); !errors.As(err, &de) || de.Status != 401 {
		t.Fatalf("JWT signed with a wrong key: %v", err)
	}
}

func TestClockSkew(t *testing.T) {
	e := newEnv(t)
	loc := e.onboard(t)
	for _, skew := range []time.Duration{5 * time.Minute, -20 * time.Minute} {
		e.now.Store(time.Now().Add(skew).UnixNano())
		var de *doshii.Error
		if _, err := e.client.GetLocation(context.Background(), loc.ID, loc.Token); !errors.As(err, &de) || de.Status != 401 {
			t.Fatalf("skew %v without correction: %v", skew, err)
		}
		e.client.Skew = new(tokensource.Skew)
		n := e.net.n.Load()
		if _, err := e.client.GetLocation(context.Background(), loc.ID, loc.Token); err != nil {
			t.Fatalf("skew %v: %v", skew, err)
		}
		if got := e.net.n.Load() - n; got != 2 {
			t.Fatalf("skew %v: %d requests, want 2 (refused, corrected)", skew, got)
		}
		if off := e.client.Skew.Offset(); (off + skew).Abs() > 5*time.Second {
			t.Fatalf("skew %v: learnt offset %v", skew, off)
		}
		n = e.net.n.Load()
		if _, err := e.client.GetLocation(context.Background(), loc.ID, loc.Token); err != nil || e.net.n.Load()-n != 1 {
			t.Fatalf("skew %v: correction not kept: %v", skew, err)
		}
		e.client.Skew = nil
	}
	// A 401 for another reason is not retried.
	e.now.Store(time.Now().UnixNano())
	e.client.Skew = new(tokensource.Skew)
	n := e.net.n.Load()
	if _, err := e.client.GetLocation(context.Background(), loc.ID, "pg_lt_unknown"); err == nil || e.net.n.Load()-n != 1 {
		t.Fatalf("unknown token: %v, %d requests", err, e.net.n.Load()-n)
	}
}

func TestKeyRotation(t *testing.T) {
	e := newEnv(t)
	loc := e.onboard(t)
	st, r := e.inst.Admin(t, "POST", "/doshii/vendors/"+e.vendorID+"/rotate-key", nil)
	if st != 200 {
		t.Fatalf("rotate: %d %v", st, r)
	}
	old := *e.client
	old.Key = doshii.NewVendorKey(e.rawKey)
	e.client.Key.Set(r["vendor_key"].(string))
	if _, err := e.client.GetLocation(context.Background(), loc.ID, loc.Token); err != nil {
		t.Fatalf("new key: %v", err)
	}
	if _, err := e.client.CreateLocation(context.Background(), doshii.Location{Name: "After rotation", OrganisationID: loc.OrganisationID}); err != nil {
		t.Fatalf("onboarding with the new key: %v", err)
	}
	if _, err := old.GetLocation(context.Background(), loc.ID, loc.Token); err != nil {
		t.Fatalf("previous key during the overlap: %v", err)
	}
}

func TestSignatureIsStandardHS256(t *testing.T) {
	key := "pg_vk_" + strings.Repeat("k", 43)
	k := doshii.NewVendorKey(key)
	at := time.Unix(1700000000, 0)
	for _, tok := range []string{"pg_lt_abc", `we"ird\tok€n`} {
		s, err := k.SignLocation(tok, at)
		if err != nil {
			t.Fatal(err)
		}
		claims := jwt.MapClaims{}
		parsed, err := jwt.ParseWithClaims(s, claims, func(*jwt.Token) (any, error) { return []byte(key), nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithStrictDecoding())
		if err != nil || parsed.Header["typ"] != "JWT" {
			t.Fatalf("%q: %v", tok, err)
		}
		if claims["locationToken"] != tok || claims["timestamp"] != float64(1700000000) || len(claims) != 2 {
			t.Fatalf("claims %v", claims)
		}
	}
	v, err := k.SignVendor("myposco", at)
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(v, claims, func(*jwt.Token) (any, error) { return []byte(key), nil }, jwt.WithValidMethods([]string{"HS256"})); err != nil || claims["vendor"] != "myposco" {
		t.Fatalf("vendor JWT: %v %v", err, claims)
	}
	if _, err := new(doshii.VendorKey).SignLocation("x", at); !errors.Is(err, doshii.ErrNoKey) {
		t.Fatalf("no key: %v", err)
	}
}
