package jackpot_test

import (
	"testing"

	"github.com/posgate/posgate/client/jackpot"
	"github.com/posgate/posgate/internal/testutil/httpcheck"
)

func TestAPIKeyNotSentToAnotherHost(t *testing.T) {
	rt := &jackpot.APIKeyTransport{Key: "pg_ck_secret"}
	if got := httpcheck.CrossHostRedirect(t, rt, "/v2/stores"); got.Get("apikey") != "" {
		t.Fatalf("the redirect target got %v", got)
	}
}
