package oauth

// errReservedAudience is the answer to a request for an audience another module mints for behind
// its own endpoint (app.AudienceReserver), in every grant.
func errReservedAudience(aud string) error {
	return Fail(CodeAccessDenied, "the audience "+aud+" is reserved for its own token endpoint")
}
