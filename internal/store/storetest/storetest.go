// Package storetest is the conformance suite every store.Store backend runs: every method, every
// sentinel error, ordering, time round trips, and the races that single use, refresh rotation,
// counters and key rotation must win exactly once. A backend's test calls
//
//	storetest.Run(t, func(t *testing.T) store.Store { … a fresh, empty store … })
//
// and passes only if it behaves exactly like the others.
package storetest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// Run runs the conformance suite. open returns a fresh, empty, migrated store for each subtest;
// the suite closes it when the subtest ends (Close must be idempotent).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Clients", testClients},
		{"ClientAssertionKeys", testClientAssertionKeys},
		{"Users", testUsers},
		{"SigningKeys", testSigningKeys},
		{"SigningKeyRotationRace", testSigningKeyRotationRace},
		{"RefreshTokens", testRefreshTokens},
		{"RefreshRevocation", testRefreshRevocation},
		{"RefreshRotationRace", testRefreshRotationRace},
		{"RefreshUserCheck", testRefreshUserCheck},
		{"RefreshUse", testRefreshUse},
		{"RefreshUseRace", testRefreshUseRace},
		{"Revocations", testRevocations},
		{"RevocationRace", testRevocationRace},
		{"SingleUse", testSingleUse},
		{"SingleUseRace", testSingleUseRace},
		{"SingleUseRaceMany", testSingleUseRaceMany},
		{"SingleUseChain", testSingleUseChain},
		{"SingleUseChainRace", testSingleUseChainRace},
		{"SingleUseAsClient", testSingleUseAsClient},
		{"SingleUseAsClientRace", testSingleUseAsClientRace},
		{"DoshiiVendors", testDoshiiVendors},
		{"DoshiiOrganisationsAndLocations", testDoshiiOrganisationsAndLocations},
		{"DoshiiOnlineAndDisabled", testDoshiiOnlineAndDisabled},
		{"DoshiiOnlineBatch", testDoshiiOnlineBatch},
		{"DoshiiDelete", testDoshiiDelete},
		{"ChefDevices", testChefDevices},
		{"ChefDecisionRace", testChefDecisionRace},
		{"ChefPendingHousekeeping", testChefPendingHousekeeping},
		{"OrderpayOutlets", testOrderpayOutlets},
		{"OrderpayTickets", testOrderpayTickets},
		{"OrderpayTicketRace", testOrderpayTicketRace},
		{"Audit", testAudit},
		{"AuditRetention", testAuditRetention},
		{"Counters", testCounters},
		{"CounterRace", testCounterRace},
		{"CountFailure", testCountFailure},
		{"CountFailureRace", testCountFailureRace},
		{"TimeRoundTrip", testTimeRoundTrip},
		{"Closed", testClosed},
		{"OutboxEnqueue", testOutboxEnqueue},
		{"OutboxOrder", testOutboxOrder},
		{"OutboxLease", testOutboxLease},
		{"OutboxComplete", testOutboxComplete},
		{"OutboxExpiry", testOutboxExpiry},
		{"OutboxCleanup", testOutboxCleanup},
		{"OutboxClaimRace", testOutboxClaimRace},
		{"OutboxEnqueueRace", testOutboxEnqueueRace},
		{"OutboxEnqueueAll", testOutboxEnqueueAll},
		{"OutboxCompleteRace", testOutboxCompleteRace},
		{"OutboxBatch", testOutboxBatch},
		{"OutboxEnqueueCompleting", testOutboxEnqueueCompleting},
		{"OutboxClaimSent", testOutboxClaimSent},
		{"OutboxRenew", testOutboxRenew},
		{"OutboxClaimable", testOutboxClaimable},
		{"OutboxEnqueueHeld", testOutboxEnqueueHeld},
		{"OutboxEnqueueByPresence", testOutboxEnqueueByPresence},
		{"OutboxSeqAfterCleanup", testOutboxSeqAfterCleanup},
		{"OutboxAnswer", testOutboxAnswer},
		{"OutboxBatchRace", testOutboxBatchRace},
		{"OutboxClosed", testOutboxClosed},
		{"Presence", testPresence},
		{"Settings", testSettings},
		{"SettingsRace", testSettingsRace},
		{"ConsoleSessions", testConsoleSessions},
		{"ConsoleSessionFlashRace", testConsoleSessionFlashRace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s)
		})
	}
}

// base has sub-millisecond digits on purpose: the store keeps milliseconds, and every comparison
// below goes through at() so the truncation is part of the contract being tested.
var base = time.Date(2031, 3, 4, 5, 6, 7, 891_234_567, time.UTC)

// at returns base+d as the store gives it back: UTC, truncated to the millisecond.
func at(d time.Duration) time.Time { return base.Add(d).Truncate(time.Millisecond) }

func ptr[T any](v T) *T { return &v }

func ctx(t *testing.T) context.Context { return t.Context() }

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func wantErr(t *testing.T, err, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error = %v, want %v", err, sentinel)
	}
}

func eqTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("%s = %v, want %v (UTC)", what, got, want)
	}
}

func eqTimePtr(t *testing.T, what string, got, want *time.Time) {
	t.Helper()
	switch {
	case got == nil && want == nil:
	case got == nil || want == nil:
		t.Errorf("%s = %v, want %v", what, got, want)
	default:
		eqTime(t, what, *got, *want)
	}
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func eqBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if string(got) != string(want) || (got == nil) != (want == nil) {
		t.Errorf("%s = %x (nil %v), want %x (nil %v)", what, got, got == nil, want, want == nil)
	}
}

func eqList(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) || (got == nil) != (want == nil) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

// race runs fn(i) on n goroutines released at once and returns their errors by i.
func race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			errs[i] = fn(i)
		}()
	}
	start.Done()
	done.Wait()
	return errs
}

// oneWinner checks exactly one error is nil and every other one wraps loser; it returns the winner.
func oneWinner(t *testing.T, errs []error, loser error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("goroutines %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, loser):
			t.Fatalf("goroutine %d: error %v, want %v", i, err, loser)
		}
	}
	if winner < 0 {
		t.Fatalf("no goroutine won")
	}
	return winner
}
