package oauth_test

import (
	"os"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/oauth"
)

// TestMain lets a password check wait for an argon2id slot far longer than in production: under
// -race on a loaded machine one hash takes seconds, and a sign-in refused 503 for want of a slot
// would fail tests about something else. The tests of the wait itself set their own.
func TestMain(m *testing.M) {
	restore := oauth.SetPasswordSlotWait(2 * time.Minute)
	code := m.Run()
	restore()
	os.Exit(code)
}
