package doshii

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/posgate/posgate/internal/oauth"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// Demo credential set. Fixed ids make `serve --demo` idempotent: the second start finds what the
// first one made.
const (
	demoVendor       = "demo-pos"
	demoOrganisation = "do_demo"
	demoLocation     = "dl_demo"
)

// SignJWTShell is a POSIX shell snippet (openssl and coreutils only) that prints a location JWT
// for $DOSHII_VENDOR_KEY and $DOSHII_LOCATION_TOKEN with the current time. The demo output and
// docs/dialects/doshii.md use it; a test runs it against the server.
var SignJWTShell = oauth.DemoHS256Shell(`printf '{"locationToken":"%s","timestamp":%s}' "$DOSHII_LOCATION_TOKEN" "$(date +%s)"`, `"$DOSHII_VENDOR_KEY"`)

// Demo seeds a demo vendor, organisation and location (idempotently) and returns curl lines for
// onboarding and for a venue call. The vendor key is read back from its sealed form; the
// location's token is rotated on every call, since only its hash is kept.
func (m *Module) Demo(ctx context.Context, baseURL string) ([]string, error) {
	st := m.svc.Store
	v, err := st.GetDoshiiVendorByName(ctx, demoVendor)
	if errors.Is(err, store.ErrNotFound) {
		v, _, err = m.createVendor(ctx, demoVendor)
	}
	if err != nil {
		return nil, fmt.Errorf("doshii demo: vendor: %w", err)
	}
	if len(v.Keys) == 0 {
		return nil, fmt.Errorf("doshii demo: vendor %s has no key", v.ID)
	}
	newest := v.Keys[0]
	for _, k := range v.Keys[1:] {
		if k.CreatedAt.After(newest.CreatedAt) {
			newest = k
		}
	}
	key, err := m.svc.Sealer.Open(newest.Sealed, vendorKeyAD(v.ID, newest.ID))
	if err != nil {
		return nil, fmt.Errorf("doshii demo: vendor key does not open: %w", err)
	}
	now := m.svc.Clock.Now().UTC()
	if _, err := st.GetDoshiiOrganisation(ctx, demoOrganisation); errors.Is(err, store.ErrNotFound) {
		body, _ := json.Marshal(organisationFields{Country: "AU"})
		err = st.CreateDoshiiOrganisation(ctx, &store.DoshiiOrganisation{ID: demoOrganisation, VendorID: v.ID,
			Name: "Demo Organisation", Body: body, CreatedAt: now, UpdatedAt: now})
		if err != nil {
			return nil, fmt.Errorf("doshii demo: organisation: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("doshii demo: organisation: %w", err)
	}
	var tok string
	if _, err := st.GetDoshiiLocation(ctx, demoLocation); errors.Is(err, store.ErrNotFound) {
		tok = secret.Generate(secret.PrefixLocationToken)
		body, _ := json.Marshal(locationFields{Country: "AU", Timezone: "Australia/Melbourne", Classification: "Café"})
		err = st.CreateDoshiiLocation(ctx, &store.DoshiiLocation{ID: demoLocation, VendorID: v.ID,
			OrganisationID: demoOrganisation, Name: "Demo Café", TokenHash: secret.Hash(tok), Body: body,
			CreatedAt: now, UpdatedAt: now})
		if err != nil {
			return nil, fmt.Errorf("doshii demo: location: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("doshii demo: location: %w", err)
	} else if tok, err = m.rotateLocationToken(ctx, demoLocation); err != nil {
		return nil, fmt.Errorf("doshii demo: location token: %w", err)
	}

	// The onboarding line creates a location; a name an earlier run's line already used would be
	// refused with 409, so it names the first one still free.
	bar, err := m.freeDemoLocationName(ctx, v.ID)
	if err != nil {
		return nil, fmt.Errorf("doshii demo: locations: %w", err)
	}
	base := strings.TrimRight(baseURL, "/") + m.cfg.prefix
	curl := oauth.DemoCurl
	return []string{
		fmt.Sprintf("# doshii: vendor %q (%s), organisation %s, location %s", demoVendor, v.ID, demoOrganisation, demoLocation),
		fmt.Sprintf("export DOSHII_VENDOR=%s DOSHII_VENDOR_KEY=%s DOSHII_LOCATION_TOKEN=%s", demoVendor, key, tok),
		"# onboarding with the vendor key:",
		fmt.Sprintf(`%s -X POST %s/locations -H 'content-type: application/json' -H "vendor: $DOSHII_VENDOR" -H "authorization: Bearer $DOSHII_VENDOR_KEY" -d '{"name":"%s","organisationId":"%s","country":"AU","timezone":"Australia/Sydney"}'; echo`,
			curl, base, bar, demoOrganisation),
		"# a venue call with a location JWT (HS256 with the vendor key, signed here by openssl):",
		"JWT=$(" + SignJWTShell + ")",
		fmt.Sprintf(`%s %s/locations/%s -H "vendor: $DOSHII_VENDOR" -H "authorization: Bearer $JWT"; echo`, curl, base, demoLocation),
	}, nil
}

// freeDemoLocationName returns "Demo Bar", or "Demo Bar 2", "Demo Bar 3"… when the demo
// organisation has that name already.
func (m *Module) freeDemoLocationName(ctx context.Context, vendorID string) (string, error) {
	locs, err := m.svc.Store.ListDoshiiLocations(ctx, vendorID)
	if err != nil {
		return "", err
	}
	taken := map[string]bool{}
	for _, l := range locs {
		if l.OrganisationID == demoOrganisation {
			taken[l.Name] = true
		}
	}
	name := "Demo Bar"
	for i := 2; taken[name]; i++ {
		name = fmt.Sprintf("Demo Bar %d", i)
	}
	return name, nil
}
