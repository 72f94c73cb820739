package oauth

import "slices"

// Audiences of token kinds other dialects mint, each behind its own endpoint with its own client
// authentication, throttle scope and lifetime (DESIGN.md "Token audiences"): jackpot's session and
// m2m tokens ("jackpot", told apart by `gty`) and chef's device tokens ("chef"). The constants
// equal jackpot.Audience and chef.Audience (a test pins them).
const (
	AudienceJackpot = "jackpot"
	AudienceChef    = "chef"
)

// reservedAudiences is the one list of audiences the token endpoint never mints for and the admin
// API never lets a client request: a client_credentials token with aud "jackpot" would carry
// exactly the claims jackpot.m2m accepts, minted past jackpot's own throttle and lifetime. The
// chimpy authenticator refuses tokens for them for the same reason.
var reservedAudiences = []string{AudienceJackpot, AudienceChef}

// ReservedAudiences returns the audiences reserved for other dialects' token kinds.
func ReservedAudiences() []string { return slices.Clone(reservedAudiences) }

// IsReservedAudience reports whether aud belongs to another dialect's token kind.
func IsReservedAudience(aud string) bool { return slices.Contains(reservedAudiences, aud) }

// HasReservedAudience reports whether any of auds is reserved.
func HasReservedAudience(auds []string) bool { return slices.ContainsFunc(auds, IsReservedAudience) }

// errReservedAudience is the answer to a request for a reserved audience, in every grant.
func errReservedAudience(aud string) error {
	return Fail(CodeAccessDenied, "the audience "+aud+" is reserved for its own token endpoint")
}
