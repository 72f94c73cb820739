package jackpot

import "github.com/posgate/posgate/internal/metrics"

// countIssued counts a minted jackpot token; grant is the short label ("jwt-bearer",
// "client_credentials").
func countIssued(grant string) {
	if grant == GrantJWTBearer {
		grant = GtySession
	}
	metrics.TokensIssued.WithLabelValues("jackpot", grant).Inc()
}

// countVerification counts one jackpot credential check by outcome ("ok", "signature", "claims",
// "replay", "unknown_client", …: a short fixed vocabulary).
func countVerification(outcome string) {
	metrics.TokenVerifications.WithLabelValues("jackpot", outcome).Inc()
}
