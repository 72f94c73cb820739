package doshii_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/posgate/posgate/client/doshii"
	"github.com/posgate/posgate/client/tokensource"
	"github.com/posgate/posgate/internal/server/servertest"
)

// TestMain starts the posgate the examples talk to and passes a vendor's key through the
// environment, as a deployment would.
func TestMain(m *testing.M) {
	inst, tb, stop := servertest.StartMain(servertest.Options{})
	_, v := inst.Admin(tb, "POST", "/doshii/vendors", map[string]any{"api_name": "exampleco"})
	os.Setenv("POSGATE_URL", inst.URL)
	os.Setenv("DOSHII_VENDOR_KEY", v["vendor_key"].(string))
	code := m.Run()
	stop()
	os.Exit(code)
}

// A vendor onboards a venue with its vendor key, keeps the location token it gets once, and
// makes the venue's calls with a location JWT signed per request.
func Example() {
	client := &doshii.Client{
		BaseURL: os.Getenv("POSGATE_URL") + "/pos/v3",
		Vendor:  "exampleco",
		Key:     doshii.NewVendorKey(os.Getenv("DOSHII_VENDOR_KEY")),
		Skew:    new(tokensource.Skew), // tolerate a POS whose clock is off
	}
	ctx := context.Background()
	org, err := client.CreateOrganisation(ctx, doshii.Organisation{
		Name: "Harbour Group", Country: "AU",
		Location: &doshii.Location{Name: "Harbour Bar", Classification: "Bar", Timezone: "Australia/Sydney"},
	})
	if err != nil {
		log.Fatal(err)
	}
	venue := org.Location // venue.Token is shown once: store it with the venue

	loc, err := client.GetLocation(ctx, venue.ID, venue.Token)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(loc.Name, loc.APIVersion)

	// Any other venue call: the transport signs each request.
	api := &http.Client{Transport: client.VenueTransport(venue.Token)}
	resp, err := api.Get(client.BaseURL + "/locations/" + venue.ID)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output:
	// Harbour Bar v3
	// 200 OK
}

// After the vendor key is rotated, Set switches every signer to the new key at once.
func ExampleVendorKey_Set() {
	key := doshii.NewVendorKey(os.Getenv("DOSHII_VENDOR_KEY"))
	newKey := os.Getenv("DOSHII_VENDOR_KEY") // in real life: the key the rotation returned
	key.Set(newKey)
	_, err := key.SignLocation("pg_lt_example", time.Now())
	fmt.Println(err)
	// Output: <nil>
}
