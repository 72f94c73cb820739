package doshii_test

import (
	"testing"

	"github.com/posgate/posgate/client/doshii"
	"github.com/posgate/posgate/internal/testutil/httpcheck"
)

func TestJWTNotSentToAnotherHost(t *testing.T) {
	rt := &doshii.Transport{Key: doshii.NewVendorKey("pg_vk_secret"), Vendor: "v", LocationToken: "pg_lt_x"}
	if got := httpcheck.CrossHostRedirect(t, rt, "/pos/v3/locations/dl_1"); got.Get("Authorization") != "" || got.Get("Vendor") != "" {
		t.Fatalf("the redirect target got %v", got)
	}
}
