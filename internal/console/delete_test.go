package console_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/store"
)

// TestDeleteDoshiiLocationAndVendor: the locations page offers to delete a doshii location and
// a vendor; each goes through a confirm page, a post without its confirmation deletes nothing,
// and a confirmed delete removes what the admin API's DELETE removes and is audited.
func TestDeleteDoshiiLocationAndVendor(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	st, ctx := inst.Svc.Store, context.Background()
	now := inst.Svc.Clock.Now()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []string{"dv_1", "dv_2"} {
		must(st.CreateDoshiiVendor(ctx, &store.DoshiiVendor{ID: v, APIName: "pos-" + v, CreatedAt: now}))
		must(st.CreateDoshiiOrganisation(ctx, &store.DoshiiOrganisation{ID: "do_" + v, VendorID: v, Name: "Org", CreatedAt: now, UpdatedAt: now}))
	}
	for id, v := range map[string]string{"dl_a": "dv_1", "dl_b": "dv_1", "dl_c": "dv_2"} {
		must(st.CreateDoshiiLocation(ctx, &store.DoshiiLocation{ID: id, VendorID: v, OrganisationID: "do_" + v, Name: "Venue " + id,
			TokenHash: []byte(id), CreatedAt: now, UpdatedAt: now}))
	}
	exists := func(id string) bool {
		t.Helper()
		_, err := st.GetDoshiiLocation(ctx, id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}

	c := browserish(t)
	signInAt(t, c, inst.URL, inst.AdminToken)
	_, page := do(t, c, http.MethodGet, inst.URL+"/admin/locations", "")
	for _, link := range []string{`href="/admin/locations/dl_a/delete"`, `href="/admin/vendors/dv_2/delete"`} {
		if !strings.Contains(page, link) {
			t.Fatalf("locations page has no %s\n%s", link, page)
		}
	}

	// The confirm page names the location and posts the confirmation.
	resp, body := do(t, c, http.MethodGet, inst.URL+"/admin/locations/dl_a/delete", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Venue dl_a") ||
		!strings.Contains(body, `action="/admin/locations/dl_a/delete"`) || !strings.Contains(body, `name="confirm" value="dl_a"`) {
		t.Fatalf("confirm page: %d\n%s", resp.StatusCode, body)
	}
	// A post without the confirmation (or with another id) is sent to the confirm page.
	for _, form := range []string{"", "confirm=dl_b"} {
		resp, _ = do(t, c, http.MethodPost, inst.URL+"/admin/locations/dl_a/delete", form)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/locations/dl_a/delete" || !exists("dl_a") {
			t.Fatalf("unconfirmed post %q: %d %s, location exists %v", form, resp.StatusCode, resp.Header.Get("Location"), exists("dl_a"))
		}
	}
	resp, _ = do(t, c, http.MethodPost, inst.URL+"/admin/locations/dl_a/delete", "confirm=dl_a")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/locations" || exists("dl_a") || !exists("dl_b") {
		t.Fatalf("confirmed delete: %d, dl_a exists %v, dl_b exists %v", resp.StatusCode, exists("dl_a"), exists("dl_b"))
	}
	if _, page = do(t, c, http.MethodGet, inst.URL+"/admin/locations", ""); !strings.Contains(page, "Deleted location dl_a") || strings.Contains(page, `data-id="dl_a"`) {
		t.Fatalf("after the delete:\n%s", page)
	}
	// Deleting it again: nothing to delete, said so.
	do(t, c, http.MethodPost, inst.URL+"/admin/locations/dl_a/delete", "confirm=dl_a")
	if _, page = do(t, c, http.MethodGet, inst.URL+"/admin/locations", ""); !strings.Contains(page, "Not deleted: no such location") {
		t.Fatalf("second delete:\n%s", page)
	}

	// A vendor: the confirm page counts its locations; the delete takes them with it.
	if _, body = do(t, c, http.MethodGet, inst.URL+"/admin/vendors/dv_2/delete", ""); !strings.Contains(body, "its 1 locations") {
		t.Fatalf("vendor confirm page:\n%s", body)
	}
	resp, _ = do(t, c, http.MethodPost, inst.URL+"/admin/vendors/dv_2/delete", "confirm="+url.QueryEscape("dv_2"))
	if resp.StatusCode != http.StatusSeeOther || exists("dl_c") || !exists("dl_b") {
		t.Fatalf("vendor delete: %d, dl_c exists %v, dl_b exists %v", resp.StatusCode, exists("dl_c"), exists("dl_b"))
	}
	if _, err := st.GetDoshiiVendor(ctx, "dv_2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("vendor after delete: %v", err)
	}
	audit, err := st.ListAudit(ctx, 50)
	must(err)
	seen := map[string]bool{}
	for _, e := range audit {
		if e.Outcome == "ok" {
			seen[e.Action+" "+e.Target] = true
		}
	}
	if !seen["doshii.location.delete dl_a"] || !seen["doshii.vendor.delete dv_2"] {
		t.Fatalf("audit: %v", seen)
	}

}
