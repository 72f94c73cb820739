package oauth

import (
	"net/http"

	"github.com/posgate/posgate/internal/httpx"
)

// Metadata is the RFC 8414 authorization server metadata.
type Metadata struct {
	Issuer                            string   `json:"issuer"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethods  []string `json:"introspection_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethods     []string `json:"revocation_endpoint_auth_methods_supported"`
}

// MetadataFor returns the metadata for issuer iss.
func (s *Server) MetadataFor(iss string) *Metadata {
	return &Metadata{
		Issuer:                iss,
		TokenEndpoint:         iss + "/oauth/token",
		JWKSURI:               iss + "/.well-known/jwks.json",
		IntrospectionEndpoint: iss + "/oauth/introspect",
		RevocationEndpoint:    iss + "/oauth/revoke",
		GrantTypesSupported:   s.GrantTypes(),
		// RFC 8414 requires the member and clients (authlib) refuse an empty list. posgate has no
		// authorization endpoint, so the one honest value is "none" (the registered response
		// type that returns no code and no token).
		ResponseTypesSupported: []string{"none"},
		// Only what works: the admin API creates confidential clients only, so "none" (a public
		// client) is not offered.
		TokenEndpointAuthMethodsSupported: []string{AuthBasic, AuthPost},
		IntrospectionEndpointAuthMethods:  []string{AuthBasic, AuthPost},
		RevocationEndpointAuthMethods:     []string{AuthBasic, AuthPost},
	}
}

func (s *Server) handleMetadata(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	httpx.WriteJSON(w, http.StatusOK, s.MetadataFor(s.issuerURL(r)))
}
