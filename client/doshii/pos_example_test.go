package doshii_test

import (
	"context"
	"errors"
	"log"
	"os"
	"os/signal"

	"github.com/posgate/posgate/client/doshii"
)

// An on-premises POS keeps its location's socket open and prints the events pushed to it. The
// location token comes from the environment, not the command line, where every local user
// could read it.
func ExamplePOSSocket() {
	s := &doshii.POSSocket{
		URL:           "https://posgate.example.com",
		LocationToken: os.Getenv("DOSHII_LOCATION_TOKEN"),
		Version:       "my-pos 4.2",
		Handler: doshii.EventHandlerFunc(func(ctx context.Context, e *doshii.Event) {
			log.Printf("event %s %s: %s", e.ID, e.Type, e.Data)
		}),
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := s.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err) // e.g. ErrSocketRevoked: the location token was rotated
	}
}

// A cloud POS opens one socket for every location of its vendor, signing a fresh vendor JWT for
// each connection.
func ExamplePOSSocket_cloud() {
	s := &doshii.POSSocket{
		URL:       "https://posgate.example.com",
		Vendor:    "acme-pos",
		VendorKey: doshii.NewVendorKey(os.Getenv("DOSHII_VENDOR_KEY")),
		Handler: doshii.EventHandlerFunc(func(ctx context.Context, e *doshii.Event) {
			log.Printf("event %s %s", e.ID, e.Type)
		}),
	}
	if err := s.Run(context.Background()); errors.Is(err, doshii.ErrSocketDisabled) {
		log.Fatal("the vendor is disabled in posgate")
	}
}
