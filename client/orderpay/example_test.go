package orderpay_test

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"log/slog"
	"os"
	"os/signal"

	"github.com/posgate/posgate/client/orderpay"
)

// A POS answers the integrator's requests for as long as it runs. The AuthSecret comes from the
// environment, not the command line, where every local user could read it.
func ExampleClient() {
	c := &orderpay.Client{
		URL: "https://posgate.example.com",
		Credentials: orderpay.Credentials{
			ProviderOutletID: "outlet-42",
			POSRemoteID:      "pe-7781",
			AuthSecret:       os.Getenv("ORDERPAY_AUTH_SECRET"),
		},
		Handler: orderpay.HandlerFunc(func(ctx context.Context, r *orderpay.Request) orderpay.Answer {
			switch r.MessageType {
			case orderpay.GetOpenOrders:
				return orderpay.Answer{Payload: map[string]any{"Orders": []any{}}}
			case orderpay.GetUserFromPIN:
				return orderpay.Answer{ResultCode: 4, ErrorMessage: "no user found"}
			default:
				return orderpay.Answer{Payload: json.RawMessage(`{}`)}
			}
		}),
		Logger: slog.Default(),
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := c.Run(ctx)
	switch {
	case errors.Is(err, context.Canceled):
		// stopped by the signal
	case errors.Is(err, orderpay.ErrDisabled):
		log.Fatal("this outlet is disabled in posgate; ask its administrator")
	case err != nil:
		log.Fatal(err)
	}
}

// Authenticate alone checks a set of credentials (for a setup screen, say) without opening a
// connection. The ticket it returns is good for one websocket upgrade and expires within minutes.
func ExampleClient_Authenticate() {
	c := &orderpay.Client{URL: "https://posgate.example.com", Credentials: orderpay.Credentials{
		ProviderOutletID: "outlet-42", POSRemoteID: "pe-7781", AuthSecret: os.Getenv("ORDERPAY_AUTH_SECRET"),
	}}
	_, err := c.Authenticate(context.Background())
	var ae *orderpay.AuthError
	switch {
	case err == nil:
		log.Print("credentials accepted")
	case errors.Is(err, orderpay.ErrUnauthorized):
		log.Print("wrong outlet id, POS remote id or secret")
	case errors.Is(err, orderpay.ErrThrottled) && errors.As(err, &ae):
		log.Printf("too many attempts; try again in %s", ae.RetryAfter)
	default:
		log.Print(err)
	}
}
