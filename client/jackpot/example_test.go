package jackpot_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/posgate/posgate/client/jackpot"
	"github.com/posgate/posgate/client/tokensource"
	"github.com/posgate/posgate/internal/server/servertest"
)

// TestMain starts the posgate the examples talk to, with the jackpot routes of its documentation
// in front of a voucher API, and passes the account's secrets through the environment.
func TestMain(m *testing.M) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"voucher":"v-1"}`))
	}))
	inst, tb, stop := servertest.StartMain(servertest.Options{Configure: routes(api.URL)})
	_, c := inst.Admin(tb, "POST", "/clients", map[string]any{"name": "shop-42",
		"grant_types": []string{jackpot.GrantJWTBearer, "client_credentials"}, "scopes": []string{}, "audiences": []string{},
		"apikey": true, "assertion_secret": true})
	for k, v := range map[string]string{"POSGATE_URL": inst.URL, "JACKPOT_API_KEY": c["client_id"].(string),
		"JACKPOT_API_SIGNATURE": c["assertion_secret"].(string), "JACKPOT_CLIENT_SECRET": c["client_secret"].(string)} {
		os.Setenv(k, v)
	}
	code := m.Run()
	stop()
	api.Close()
	os.Exit(code)
}

// One reservation, one session: the session's amount caps the price, and the session is spent
// by the reservation, so a second one is refused before it is sent.
func ExampleConfig_NewSession() {
	cfg := jackpot.Config{
		BaseURL:      os.Getenv("POSGATE_URL"),
		APIKey:       os.Getenv("JACKPOT_API_KEY"),
		APISignature: []byte(os.Getenv("JACKPOT_API_SIGNATURE")),
		Skew:         new(tokensource.Skew), // tolerate a till whose clock is off
	}
	session, err := cfg.NewSession(context.Background(), jackpot.SessionRequest{Amount: 25, UserID: "cashier-7"})
	if err != nil {
		log.Fatal(err)
	}
	reserve := func() (*http.Response, error) {
		req, _ := http.NewRequest("POST", cfg.BaseURL+"/v2/stores/s1/offers/o1/reserve-voucher-by-price", strings.NewReader(`{"price":20}`))
		req.Header.Set("Content-Type", "application/json")
		return session.Reserve(req)
	}
	resp, err := reserve()
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println("reservation:", resp.Status)
	_, err = reserve()
	fmt.Println("second reservation refused:", errors.Is(err, jackpot.ErrSessionSpent))
	// Output:
	// reservation: 200 OK
	// second reservation refused: true
}

// Low-risk reads take the API key alone.
func ExampleAPIKeyTransport() {
	client := &http.Client{Transport: &jackpot.APIKeyTransport{Key: os.Getenv("JACKPOT_API_KEY")}}
	resp, err := client.Get(os.Getenv("POSGATE_URL") + "/v2/stores")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}

// A back-office service confirms vouchers with a machine-to-machine token, cached and renewed.
func ExampleConfig_M2M() {
	cfg := jackpot.Config{
		BaseURL:      os.Getenv("POSGATE_URL"),
		APIKey:       os.Getenv("JACKPOT_API_KEY"),
		ClientSecret: os.Getenv("JACKPOT_CLIENT_SECRET"),
	}
	client := tokensource.Client(cfg.M2M(context.Background()), nil)
	req, _ := http.NewRequest("PUT", cfg.BaseURL+"/v2/voucher/v-1/confirm", nil)
	resp, err := client.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}
