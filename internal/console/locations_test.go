package console_test

import (
	"context"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/dialect/chef/cheftest"
	"github.com/posgate/posgate/internal/store"
)

// TestLocationsPage: the console shows each doshii location's online state as the store records
// it (a heartbeat deadline ahead: online; passed or never: offline; disabled).
func TestLocationsPage(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{})
	st, ctx := inst.Svc.Store, context.Background()
	now := inst.Svc.Clock.Now()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.CreateDoshiiVendor(ctx, &store.DoshiiVendor{ID: "dv_1", APIName: "pos-co", CreatedAt: now}))
	must(st.CreateDoshiiOrganisation(ctx, &store.DoshiiOrganisation{ID: "do_1", VendorID: "dv_1", Name: "Org", CreatedAt: now, UpdatedAt: now}))
	for _, id := range []string{"dl_online", "dl_offline", "dl_never", "dl_disabled"} {
		must(st.CreateDoshiiLocation(ctx, &store.DoshiiLocation{ID: id, VendorID: "dv_1", OrganisationID: "do_1", Name: "Venue " + id,
			TokenHash: []byte(id), CreatedAt: now, UpdatedAt: now}))
	}
	must(st.ExtendDoshiiLocationOnline(ctx, "dl_online", now.Add(time.Minute)))
	must(st.ExtendDoshiiLocationOnline(ctx, "dl_offline", now.Add(-time.Minute)))
	must(st.SetDoshiiLocationDisabled(ctx, "dl_disabled", true, now))

	c := browserish(t)
	if resp, _ := do(t, c, http.MethodGet, inst.URL+"/admin/locations", ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("not signed in: %d", resp.StatusCode)
	}
	signIn(t, inst, c)
	resp, body := do(t, c, http.MethodGet, inst.URL+"/admin/locations", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("locations page: %d", resp.StatusCode)
	}
	for id, state := range map[string]string{"dl_online": "online", "dl_offline": "offline", "dl_never": "offline", "dl_disabled": "disabled"} {
		row := regexp.MustCompile(`(?s)<tr data-id="` + id + `">\s*<td><span class="badge \w+">(\w+)</span>`).FindStringSubmatch(body)
		if row == nil || row[1] != state {
			t.Errorf("%s: %v, want %s\n%s", id, row, state, body)
		}
	}
}
